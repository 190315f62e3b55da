"""The Triton forward and backward kernels of every row-wise variant (launched by triton_rownorm.py).

One program normalizes one row in the forward.  With y = (x - mean) * r, r = 1 / s(v),
v = sum_{j<m} (x_j - mean)^2 / D (mean = 0 for the RMS family), and gy = dL/dy (g * w with a gain,
g * C * (1 - k * y) for AdaNorm, whose factor is detached), the backward is the one of fast.py:
    dx_i = r * gy_i - [MEAN_PATH][i<m] r * sum_j gy_j / m - [VAR_PATH][i<m] vc * sum_j (gy_j y_j) * y_i / D
with vc = r for s = sqrt(v + eps) and vc = 1 / sqrt(v) for s = sqrt(v) + eps.  Detached statistics
drop their term (MEAN_PATH / VAR_PATH false).  The forward saves (mean, r, vc) in float32 per row and
the backward recomputes y from x.  The backward runs a few programs (BWD_PROGRAMS_PER_SM per SM on a GPU), each
looping over a contiguous range of rows and summing its rows' gain/bias gradients in float32 into a
private row of a (programs, H) buffer that the launcher adds up (as Liger-Kernel's and
flash-attention's Triton layer norms do).

Rows up to BLOCK wide are held in registers (ONE_BLOCK); wider rows loop over column blocks: the
forward reads the row three times (mean, variance about it, output) and the backward twice (the two
row sums, then dx), all but the first from cache.  Every sum accumulates in float32 whatever the
input's dtype.  The variant choices are compile-time constants (one specialisation per variant);
m, D, eps, C and k are run-time arguments.
"""
import triton
import triton.language as tl


@triton.jit
def _scale(var, eps, INSIDE: tl.constexpr):
    """(r, vc): 1 / s and the variance term's coefficient."""
    if INSIDE:
        r = tl.rsqrt(var + eps)
        vc = r
    else:
        sd = tl.sqrt(var)
        r = 1.0 / (sd + eps)
        vc = 1.0 / sd
    return r, vc


@triton.jit
def _register_row_stats(x, cols, m, divisor, eps, CENTER: tl.constexpr, INSIDE: tl.constexpr):
    """(mean, r, vc) of a row held in registers (zero past its end), over its first m elements."""
    in_stat = cols < m
    if CENTER:
        mean = tl.sum(tl.where(in_stat, x, 0.0), axis=0) / m
        d = tl.where(in_stat, x - mean, 0.0)
    else:
        d = tl.where(in_stat, x, 0.0)
    r, vc = _scale(tl.sum(d * d, axis=0) / divisor, eps, INSIDE)
    if not CENTER:
        mean = r * 0.0  # a float32 scalar like the LayerNorm family's mean
    return mean, r, vc


@triton.jit
def _streamed_row_stats(X, cols, m, divisor, eps, CENTER: tl.constexpr, INSIDE: tl.constexpr, BLOCK: tl.constexpr):
    """(mean, r, vc) of a row too wide for registers: a pass for the mean, a pass for the variance about it."""
    acc = tl.zeros([BLOCK], tl.float32)
    if CENTER:
        for start in range(0, m, BLOCK):
            c = start + cols
            acc += tl.load(X + c, mask=c < m, other=0.0).to(tl.float32)
        mean = tl.sum(acc, axis=0) / m
        acc = tl.zeros([BLOCK], tl.float32)
    else:
        mean = tl.sum(acc, axis=0)  # 0, a float32 scalar like the LayerNorm family's mean
    for start in range(0, m, BLOCK):  # about the mean, not sum(x^2) - m mean^2: no cancellation
        c = start + cols
        d = tl.where(c < m, tl.load(X + c, mask=c < m, other=0.0).to(tl.float32) - mean, 0.0)
        acc += d * d
    r, vc = _scale(tl.sum(acc, axis=0) / divisor, eps, INSIDE)
    return mean, r, vc


@triton.jit
def _affine(y, W, B, c, mask, C, k, HAS_W: tl.constexpr, HAS_B: tl.constexpr, ADA: tl.constexpr):
    if ADA:
        z = C * (1.0 - k * y) * y
    else:
        z = y
        if HAS_W:
            z = z * tl.load(W + c, mask=mask, other=0.0).to(tl.float32)
        if HAS_B:
            z = z + tl.load(B + c, mask=mask, other=0.0).to(tl.float32)
    return z


@triton.jit
def rownorm_forward(X, Y, W, B, S, H, m, divisor, eps, C, k, CENTER: tl.constexpr, INSIDE: tl.constexpr,
                    HAS_W: tl.constexpr, HAS_B: tl.constexpr, ADA: tl.constexpr, BLOCK: tl.constexpr,
                    ONE_BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    X += row * H
    Y += row * H
    cols = tl.arange(0, BLOCK)
    if ONE_BLOCK:
        mask = cols < H
        x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
        mean, r, vc = _register_row_stats(x, cols, m, divisor, eps, CENTER, INSIDE)
        z = _affine((x - mean) * r, W, B, cols, mask, C, k, HAS_W, HAS_B, ADA)
        tl.store(Y + cols, z.to(Y.dtype.element_ty), mask=mask)
    else:
        mean, r, vc = _streamed_row_stats(X, cols, m, divisor, eps, CENTER, INSIDE, BLOCK)
        for start in range(0, H, BLOCK):
            c = start + cols
            mask = c < H
            y = (tl.load(X + c, mask=mask, other=0.0).to(tl.float32) - mean) * r
            z = _affine(y, W, B, c, mask, C, k, HAS_W, HAS_B, ADA)
            tl.store(Y + c, z.to(Y.dtype.element_ty), mask=mask)
    tl.store(S + row * 3, mean)
    tl.store(S + row * 3 + 1, r)
    tl.store(S + row * 3 + 2, vc)


@triton.jit
def _grad_y(g, y, w, C, k, HAS_W: tl.constexpr, ADA: tl.constexpr):
    """dL/dy from the upstream gradient g: through the gain, or through AdaNorm's C * (1 - k * sg(y))."""
    if HAS_W:
        gy = g * w
    elif ADA:
        gy = g * C * (1.0 - k * y)
    else:
        gy = g
    return gy


@triton.jit
def rownorm_backward(G, X, S, W, DX, DW, DB, R, H, m, divisor, C, k, rows_per_program, HAS_W: tl.constexpr,
                     HAS_B: tl.constexpr, ADA: tl.constexpr, MEAN_PATH: tl.constexpr, VAR_PATH: tl.constexpr,
                     BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    row0 = pid * rows_per_program
    row1 = tl.minimum(row0 + rows_per_program, R)
    cols = tl.arange(0, BLOCK)
    DW += pid.to(tl.int64) * H
    DB += pid.to(tl.int64) * H
    if ONE_BLOCK:
        mask = cols < H
        in_stat = cols < m
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32) if HAS_W else 0.0
        dw = tl.zeros([BLOCK], tl.float32)
        db = tl.zeros([BLOCK], tl.float32)
        for row in range(row0, row1):
            off = tl.cast(row, tl.int64) * H
            mean, r, vc = tl.load(S + row * 3), tl.load(S + row * 3 + 1), tl.load(S + row * 3 + 2)
            x = tl.load(X + off + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.load(G + off + cols, mask=mask, other=0.0).to(tl.float32)
            y = (x - mean) * r
            gy = _grad_y(g, y, w, C, k, HAS_W, ADA)  # zero past H (g is), so the sums need no mask
            dx = r * gy
            if MEAN_PATH:
                dx -= tl.where(in_stat, r * tl.sum(gy, axis=0) / m, 0.0)
            if VAR_PATH:
                dx -= tl.where(in_stat, (vc * tl.sum(gy * y, axis=0) / divisor) * y, 0.0)
            tl.store(DX + off + cols, dx.to(DX.dtype.element_ty), mask=mask)
            if HAS_W:
                dw += g * y
            if HAS_B:
                db += g
        if HAS_W:
            tl.store(DW + cols, dw, mask=mask)
        if HAS_B:
            tl.store(DB + cols, db, mask=mask)
    else:
        # Wide rows: the partial gain/bias sums live in this program's row of DW/DB (zeroed by the launcher).
        for row in range(row0, row1):
            off = tl.cast(row, tl.int64) * H
            mean, r, vc = tl.load(S + row * 3), tl.load(S + row * 3 + 1), tl.load(S + row * 3 + 2)
            sum_gy = tl.zeros([BLOCK], tl.float32)
            sum_gyy = tl.zeros([BLOCK], tl.float32)
            for start in range(0, H, BLOCK):
                c = start + cols
                mask = c < H
                y = (tl.load(X + off + c, mask=mask, other=0.0).to(tl.float32) - mean) * r
                g = tl.load(G + off + c, mask=mask, other=0.0).to(tl.float32)
                w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32) if HAS_W else 0.0
                gy = _grad_y(g, y, w, C, k, HAS_W, ADA)
                sum_gy += gy
                sum_gyy += gy * y
            a = r * tl.sum(sum_gy, axis=0) / m
            b = vc * tl.sum(sum_gyy, axis=0) / divisor
            for start in range(0, H, BLOCK):
                c = start + cols
                mask = c < H
                in_stat = c < m
                y = (tl.load(X + off + c, mask=mask, other=0.0).to(tl.float32) - mean) * r
                g = tl.load(G + off + c, mask=mask, other=0.0).to(tl.float32)
                w = tl.load(W + c, mask=mask, other=0.0).to(tl.float32) if HAS_W else 0.0
                gy = _grad_y(g, y, w, C, k, HAS_W, ADA)
                dx = r * gy
                if MEAN_PATH:
                    dx -= tl.where(in_stat, a, 0.0)
                if VAR_PATH:
                    dx -= tl.where(in_stat, b * y, 0.0)
                tl.store(DX + off + c, dx.to(DX.dtype.element_ty), mask=mask)
                if HAS_W:
                    tl.store(DW + c, tl.load(DW + c, mask=mask, other=0.0) + g * y, mask=mask)
                if HAS_B:
                    tl.store(DB + c, tl.load(DB + c, mask=mask, other=0.0) + g, mask=mask)
