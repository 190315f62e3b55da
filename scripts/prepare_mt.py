"""Prepare the full-size MT training data (download + fairseq's prepare recipes); see normexp/tasks/translation/prepare.py.

    python scripts/prepare_mt.py iwslt14_deen            # de-en.tgz → iwslt14_deen/{tokenized_lowercased,bpe10k}/
    python scripts/prepare_mt.py iwslt15_envi            # Stanford train.{en,vi}
    python scripts/prepare_mt.py wmt14_ende --workers 8  # HF mirror of the statmt corpora → wmt14_ende/bpe40k/

Files land under --out (default: $NORMEXP_DOWNLOAD_DIR or <repo>/data), where the tasks look for them. Archives can be
put there by hand first (same relative paths, e.g. iwslt14_deen/orig/de-en.tgz) when the machine has no network.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from normexp.tasks.files import DataError
from normexp.tasks.translation.prepare import RECIPES, prepare_wmt14


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, default=None, help="data root to write into (default: the download dir)")
    parser.add_argument("--workers", type=int, default=1, help="processes for tokenization and BPE learning")
    parser.add_argument("--bpe-merges", type=int, default=40000, help="wmt14_ende only (prepare-wmt14en2de.sh: 40000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.time()
    try:
        if args.task == "wmt14_ende":
            out = prepare_wmt14(args.out, args.workers, args.bpe_merges)
        else:
            out = RECIPES[args.task](args.out, args.workers)
    except DataError as e:
        print(f"prepare_mt: {e}", file=sys.stderr)
        return 2
    print(f"{args.task}: prepared in {out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
