"""Explicit SIMD vectors for Numba kernels: a vector type and a handful of intrinsics.

LLVM's auto-vectoriser turns a flat loop into SIMD code well, but it will not keep a
*tile* of accumulators in registers across an outer loop: a conv kernel written with
scalar loops reloads and re-stores its output rows on every input channel and tap, so
it is bound by loads and stores, not FMAs (PERFLOG.md, round 4). Here a SIMD vector is a
Numba value like a float - `Vec(float32, 16)` is LLVM's `<16 x float>` - so a kernel can
hold, say, 16 of them in local variables (one tile of 8 output channels x 32 pixels)
and LLVM keeps them in registers for the whole reduction.

    acc = vbcast(bias, co)                  # splat bias[co] into all lanes
    for c in range(C):
        xv = vloadm(x, i, mask)            # x[i : i + LANES], lanes where mask bit is 0 read as 0
        acc = vfma(xv, vbcast(w, k), acc)  # acc + xv * w[k], lane by lane
    vstorem(out, i, acc, mask)             # out[i + l] = acc[l] where mask bit l is 1

Arrays are 1-D and C-contiguous; indices are element offsets and are *not* bounds
checked (masked-off lanes are never touched, so a masked access may start before the
array or run past its end). The lane count is fixed per dtype when this module is
imported: 64-byte vectors (16 float32 / 8 float64) on AVX-512 hosts, 32 bytes otherwise
(`LANES`). Masks are integers whose bit l selects lane l.

Under `NUMBA_BOUNDSCHECK=1` (Numba's own switch for its array indexing) every access
here is checked too: the lanes a load, store, gather or broadcast touches (a masked one:
its selected lanes) must lie inside the array, else IndexError. A kernel that reads
past an array only at some lane count (8 accumulators splatted from a 4-lane float64
array on AVX2) then fails loudly instead of returning garbage. Kernels compiled with
checks are cached apart from those without (`_numba._KernelCache`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model


def _vector_bytes() -> int:
    """64 if the code Numba generates may use AVX-512 (its `NUMBA_CPU_FEATURES` when
    set, else the host's features), else 32. Wider vectors than the target has still
    compile (LLVM splits them), just slower."""
    import numba

    features = numba.config.CPU_FEATURES
    if not features:
        try:
            import llvmlite.binding as llb

            features = llb.get_host_cpu_features().flatten()
        except Exception:  # pragma: no cover - exotic platforms
            return 32
    return 64 if "+avx512f" in features.split(",") else 32


VECTOR_BYTES = _vector_bytes()
LANES = {np.dtype(np.float32): VECTOR_BYTES // 4, np.dtype(np.float64): VECTOR_BYTES // 8}


def lanes(dtype) -> int:
    """Lanes of one SIMD vector of `dtype` (float32 or float64)."""
    return LANES[np.dtype(dtype)]


class Vec(types.Type):
    """A SIMD vector of `count` elements of `dtype` (LLVM `<count x dtype>`)."""

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        super().__init__(name=f"Vec({dtype} x {count})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


_SUFFIX = {types.float32: "f32", types.float64: "f64"}


def _vec_of(arr) -> Vec:
    if not isinstance(arr, types.Array) or arr.dtype not in _SUFFIX:
        raise TypeError(f"simd: expected a float32/float64 array, got {arr}")
    return Vec(arr.dtype, LANES[np.dtype(str(arr.dtype))])


def _elem_ptr(context, builder, aryty, ary, idx):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.gep(data, [idx])  # not inbounds: masked lanes may lie outside


def _vec_ptr(context, builder, aryty, ary, idx, vt):
    ptr = _elem_ptr(context, builder, aryty, ary, idx)
    return builder.bitcast(ptr, ir.PointerType(context.get_value_type(vt)))


def _check_lanes(context, builder, aryty, ary, idx, first, last, step=1):
    """Under bounds checking (`NUMBA_BOUNDSCHECK=1`): IndexError unless the elements
    idx + first * step and idx + last * step (i64 values; the lanes touched lie between
    them) are inside the array."""
    if not context.enable_boundscheck:
        return
    i64 = ir.IntType(64)
    n = context.make_array(aryty)(context, builder, ary).nitems
    n = builder.sext(n, i64) if n.type.width < 64 else n
    idx = idx if idx.type.width == 64 else builder.sext(idx, i64)
    step = step if isinstance(step, ir.Value) else ir.Constant(i64, step)
    bad = ir.Constant(ir.IntType(1), 0)
    for lane in (first, last):
        at = builder.add(idx, builder.mul(lane, step))
        outside = builder.or_(
            builder.icmp_signed("<", at, i64(0)), builder.icmp_signed(">=", at, n)
        )
        bad = builder.or_(bad, outside)
    with cgutils.if_unlikely(builder, bad):
        context.call_conv.return_user_exc(
            builder, IndexError, ("simd: vector access outside the array",)
        )


def _check_mask(context, builder, aryty, ary, idx, lane_mask, count, step=1):
    """`_check_lanes` for the lanes selected in `lane_mask` (<count x i1>): from its
    lowest set bit to its highest; nothing when no lane is selected."""
    if not context.enable_boundscheck:
        return
    i64 = ir.IntType(64)
    bits = builder.bitcast(lane_mask, ir.IntType(count))
    with builder.if_then(builder.icmp_unsigned("!=", bits, bits.type(0))):
        first = builder.zext(builder.cttz(bits, ir.Constant(ir.IntType(1), 1)), i64)
        lead = builder.zext(builder.ctlz(bits, ir.Constant(ir.IntType(1), 1)), i64)
        last = builder.sub(i64(count - 1), lead)
        _check_lanes(context, builder, aryty, ary, idx, first, last, step)


def _lane_mask(builder, mask, count):
    """Integer bit mask -> <count x i1>.

    With AVX-512 a bitcast: the integer goes straight into a mask register. Without it
    masks live in vector registers, and LLVM lowers that bitcast one lane at a time (a
    shift, an and, a negate and a shuffle per lane: ~30 instructions for 8 lanes, in the
    inner loop of every masked load). Splatting the integer and testing lane l's bit
    against a constant vector (1 << l) is three instructions (broadcast, and, compare).
    """
    width = mask.type.width
    if VECTOR_BYTES < 64:
        i32 = ir.IntType(32)
        if width > 32:
            mask = builder.trunc(mask, i32)
        elif width < 32:
            mask = builder.zext(mask, i32)
        vi32 = ir.VectorType(i32, count)
        bits = builder.and_(
            _splat(builder, vi32, mask), ir.Constant(vi32, [1 << lane for lane in range(count)])
        )
        return builder.icmp_unsigned("!=", bits, ir.Constant(vi32, [0] * count))
    if width > count:
        mask = builder.trunc(mask, ir.IntType(count))
    elif width < count:
        mask = builder.zext(mask, ir.IntType(count))
    return builder.bitcast(mask, ir.VectorType(ir.IntType(1), count))


def _splat(builder, llvt, scalar):
    zero = ir.Constant(llvt, None)
    v = builder.insert_element(zero, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(
        v, zero, ir.Constant(ir.VectorType(ir.IntType(32), llvt.count), [0] * llvt.count)
    )


def _align(vt) -> ir.Constant:
    return ir.Constant(ir.IntType(32), vt.dtype.bitwidth // 8)


@intrinsic
def vload(typingctx, arr, idx):
    """arr[idx : idx + LANES] (all lanes must lie inside the array)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        _check_lanes(context, builder, sig.args[0], args[0], args[1], i64(0), i64(vt.count - 1))
        ptr = _vec_ptr(context, builder, sig.args[0], args[0], args[1], vt)
        return builder.load(ptr, align=vt.dtype.bitwidth // 8)

    return vt(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, vec):
    """arr[idx : idx + LANES] = vec (all lanes must lie inside the array)."""

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        _check_lanes(context, builder, sig.args[0], args[0], args[1], i64(0), i64(vec.count - 1))
        ptr = _vec_ptr(context, builder, sig.args[0], args[0], args[1], vec)
        builder.store(args[2], ptr, align=vec.dtype.bitwidth // 8)
        return context.get_dummy_value()

    if not isinstance(vec, Vec) or vec != _vec_of(arr):
        raise TypeError(f"simd.vstore: cannot store {vec} into {arr}")
    return types.void(arr, idx, vec), codegen


@intrinsic
def vgather(typingctx, arr, idx, stride, mask):
    """Lane l = arr[idx + l*stride] where bit l of `mask` is set, else 0: one strided
    gather (a row of a transposed matrix) instead of LANES scalar loads and stores."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        n = vt.count
        i64 = ir.IntType(64)
        base = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        step = context.cast(builder, args[2], sig.args[2], types.int64)
        step = builder.mul(step, ir.Constant(i64, vt.dtype.bitwidth // 8))  # bytes
        vi64 = ir.VectorType(i64, n)
        lanes_ = ir.Constant(vi64, list(range(n)))
        addrs = builder.add(
            _splat(builder, vi64, builder.ptrtoint(base, i64)),
            builder.mul(lanes_, _splat(builder, vi64, step)),
        )
        ptrs = builder.inttoptr(addrs, ir.VectorType(base.type, n))
        llvt = context.get_value_type(vt)
        mask = _lane_mask(builder, args[3], n)
        lanes_step = context.cast(builder, args[2], sig.args[2], types.int64)
        _check_mask(context, builder, sig.args[0], args[0], args[1], mask, n, lanes_step)
        name = f"llvm.masked.gather.v{n}{_SUFFIX[vt.dtype]}.v{n}p0"
        fnty = ir.FunctionType(llvt, [ptrs.type, ir.IntType(32), mask.type, llvt])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, [ptrs, _align(vt), mask, ir.Constant(llvt, None)])

    return vt(arr, idx, stride, mask), codegen


@intrinsic
def vloadm(typingctx, arr, idx, mask):
    """arr[idx : idx + LANES] with lane l read only if bit l of `mask` is set (else 0)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        llvt = context.get_value_type(vt)
        ptr = _vec_ptr(context, builder, sig.args[0], args[0], args[1], vt)
        lane_mask = _lane_mask(builder, args[2], vt.count)
        _check_mask(context, builder, sig.args[0], args[0], args[1], lane_mask, vt.count)
        name = f"llvm.masked.load.v{vt.count}{_SUFFIX[vt.dtype]}.p0"
        fnty = ir.FunctionType(llvt, [ptr.type, ir.IntType(32), lane_mask.type, llvt])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, [ptr, _align(vt), lane_mask, ir.Constant(llvt, None)])

    return vt(arr, idx, mask), codegen


@intrinsic
def vstorem(typingctx, arr, idx, vec, mask):
    """arr[idx + l] = vec[l] for the lanes l whose bit is set in `mask`."""

    def codegen(context, builder, sig, args):
        llvt = context.get_value_type(vec)
        ptr = _vec_ptr(context, builder, sig.args[0], args[0], args[1], vec)
        lane_mask = _lane_mask(builder, args[3], vec.count)
        _check_mask(context, builder, sig.args[0], args[0], args[1], lane_mask, vec.count)
        name = f"llvm.masked.store.v{vec.count}{_SUFFIX[vec.dtype]}.p0"
        fnty = ir.FunctionType(ir.VoidType(), [llvt, ptr.type, ir.IntType(32), lane_mask.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        masked_store = lambda: builder.call(fn, [args[2], ptr, _align(vec), lane_mask])  # noqa: E731
        if VECTOR_BYTES >= 64:
            masked_store()
            return context.get_dummy_value()
        # Without AVX-512 the masked store (vmaskmovps) is microcoded on AMD: ~10 cycles
        # a store on Zen 3 against 1 for a plain one, whatever the mask, even none. Most
        # stores of a kernel select every lane (only a row's last vector is partial, or
        # past the row's end, empty): those go plain, or nowhere.
        bits = builder.bitcast(lane_mask, ir.IntType(vec.count))
        full = builder.icmp_unsigned("==", bits, ir.Constant(bits.type, (1 << vec.count) - 1))
        with builder.if_else(full, likely=True) as (whole, part):
            with whole:
                builder.store(args[2], ptr, align=vec.dtype.bitwidth // 8)
            with part:
                with builder.if_then(builder.icmp_unsigned("!=", bits, bits.type(0))):
                    masked_store()
        return context.get_dummy_value()

    if not isinstance(vec, Vec) or vec != _vec_of(arr):
        raise TypeError(f"simd.vstorem: cannot store {vec} into {arr}")
    return types.void(arr, idx, vec, mask), codegen


@intrinsic
def vbcast(typingctx, arr, idx):
    """A vector with arr[idx] in every lane."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        _check_lanes(context, builder, sig.args[0], args[0], args[1], i64(0), i64(0))
        scalar = builder.load(_elem_ptr(context, builder, sig.args[0], args[0], args[1]))
        return _splat(builder, context.get_value_type(vt), scalar)

    return vt(arr, idx), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane by lane, as one fused multiply-add."""
    if not (isinstance(a, Vec) and a == b == c):
        raise TypeError(f"simd.vfma: expected three equal vector types, got {a}, {b}, {c}")

    def codegen(context, builder, sig, args):
        llvt = args[0].type
        name = f"llvm.fma.v{a.count}{_SUFFIX[a.dtype]}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(llvt, [llvt] * 3), name)
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


def _binary(name: str, op: str, doc: str):
    """A lane-by-lane binary intrinsic `name(a, b)` built from an IRBuilder method."""

    def typer(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            raise TypeError(f"simd.{name}: expected two equal vector types, got {a}, {b}")

        def codegen(context, builder, sig, args):
            return getattr(builder, op)(args[0], args[1])

        return a(a, b), codegen

    typer.__name__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


vadd = _binary("vadd", "fadd", "a + b lane by lane.")
vsub = _binary("vsub", "fsub", "a - b lane by lane.")
vmul = _binary("vmul", "fmul", "a * b lane by lane.")


def _zip_half(name: str, high: bool):
    """`name(a, b)`: the low (or high) half of a and b interleaved lane by lane."""

    def typer(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            raise TypeError(f"simd.{name}: expected two equal vector types, got {a}, {b}")
        n = a.count
        start = n // 2 if high else 0
        order = [i for j in range(start, start + n // 2) for i in (j, j + n)]

        def codegen(context, builder, sig, args):
            mask = ir.Constant(ir.VectorType(ir.IntType(32), n), order)
            return builder.shuffle_vector(args[0], args[1], mask)

        return a(a, b), codegen

    typer.__name__ = name
    typer.__doc__ = (
        f"[a[k], b[k], a[k+1], b[k+1], ...] from k = {'LANES/2' if high else '0'}: "
        "the lanes of a and b interleaved (two rows of a 2-wide tile into one row)."
    )
    return intrinsic(typer)


vziplo = _zip_half("vziplo", high=False)
vziphi = _zip_half("vziphi", high=True)


def _unzip(name: str, odd: bool):
    """`name(a, b)`: the even (or odd) lanes of a then b."""

    def typer(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            raise TypeError(f"simd.{name}: expected two equal vector types, got {a}, {b}")
        order = list(range(int(odd), 2 * a.count, 2))

        def codegen(context, builder, sig, args):
            mask = ir.Constant(ir.VectorType(ir.IntType(32), a.count), order)
            return builder.shuffle_vector(args[0], args[1], mask)

        return a(a, b), codegen

    typer.__name__ = name
    typer.__doc__ = (
        f"[a[{int(odd)}], a[{int(odd) + 2}], ..., b[{int(odd)}], b[{int(odd) + 2}], ...]: "
        f"the {'odd' if odd else 'even'} elements of 2 * LANES consecutive values."
    )
    return intrinsic(typer)


vunziplo = _unzip("vunziplo", odd=False)
vunziphi = _unzip("vunziphi", odd=True)


@intrinsic
def vneg(typingctx, a):
    """-a lane by lane."""
    if not isinstance(a, Vec):
        raise TypeError(f"simd.vneg: expected a vector, got {a}")

    def codegen(context, builder, sig, args):
        return builder.fneg(args[0])

    return a(a), codegen


def _prefetch(name: str, write: int, locality: int, doc: str):
    """`name(arr, idx)`: llvm.prefetch of the cache line holding arr[idx]."""

    def typer(typingctx, arr, idx):
        if not isinstance(arr, types.Array):
            raise TypeError(f"simd.{name}: expected an array, got {arr}")

        def codegen(context, builder, sig, args):
            ptr = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
            i8p = ir.PointerType(ir.IntType(8))
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            flags = [ir.Constant(i32, v) for v in (write, locality, 1)]  # 1: data cache
            builder.call(fn, [builder.bitcast(ptr, i8p), *flags])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    typer.__name__ = name
    typer.__doc__ = doc + " Never faults: idx may lie outside the array."
    return intrinsic(typer)


# the data of a later block: into the outer caches, not L1 (prefetcht2), where it would
# evict the block being computed (gemm.py: prefetcht0 measured slower than t2)
prefetch = _prefetch("prefetch", 0, 1, "Read-prefetch the line of arr[idx] into L2/L3 (not L1).")
prefetchw = _prefetch("prefetchw", 1, 3, "Prefetch the line of arr[idx] to be written (prefetchw).")
