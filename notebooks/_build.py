"""Build the teaching notebooks from the cell lists below and execute them (outputs are
stored, so they read well on a repository page).

    python notebooks/_build.py            # build + execute all
    python notebooks/_build.py 02 04      # only these
    python notebooks/_build.py --no-exec  # write without outputs

Each notebook states what the learner should see and checks it with an assert, so a
regression in the engine fails the notebook (tests/test_notebooks.py runs them).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SETUP = """\
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
%matplotlib inline

import minires as mr
import minires.functional as F
from minires import analysis as A, models, nn
from minires.data.digits import load_digits

# 8x8 images: the readable NumPy reference kernels are the fastest backend at this size
mr.set_backend("numpy")
mr.manual_seed(0)
np.set_printoptions(precision=4, suppress=True)"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"))


# =====================================================================================
# 01 autograd from scratch
# =====================================================================================

NB01 = [
    md("""
# 01 - Autograd from scratch: a Tensor, a graph, backward

minires is a small deep-learning engine written with NumPy. This notebook opens its
autograd: what a `Tensor` records, what the graph looks like, what `backward()` does -
and why **a value used twice receives the sum of the gradients of its uses**. That last
rule is the whole story of residual networks: in `y = x + F(x)` the input `x` is used
twice, so `dy/dx = 1 + dF/dx`.

**What you should see:** gradients that match the calculus you would do by hand, and
the two branches of a fork adding up.
"""),
    code(SETUP),
    md("""
## A Tensor and the graph it leaves behind

A `Tensor` is an ndarray plus three things for autograd: `requires_grad`, `grad` and
`grad_fn` (the recorded op that produced it). Every operator is a `Function` with a
hand-written `forward` and `backward`.
"""),
    code("""
a = mr.tensor(2.0, requires_grad=True)
b = mr.tensor(3.0, requires_grad=True)
c = a * b          # a Mul node
y = c + a          # an Add node; note: `a` is used twice
print(y, "\\n")
names = {id(a): "a", id(b): "b", id(c.grad_fn): "c's node"}
print("graph, output first (per input: the leaf tensor, or the node that made it):")
for node in mr.autograd.iter_graph(y):
    print("  ", node, "<-", [names[id(i)] for i in node.inputs])
"""),
    md("""
A node keeps the *leaf* tensors it consumed (`a`, `b`: they will receive `.grad`) but,
for an intermediate value like `c`, only the node that produced it - never the tensor.
The activations live only in what each op saved for its backward, and `backward()`
frees that, so after it the graph holds no activation even while `y` is referenced.
"""),
    md("""
The same graph drawn by `mr.viz` (ops with their output shape, the leaves `a` and `b`
in blue, arrows in the direction of the forward pass). `a` has two arrows out: it is used
twice, so in backward two gradients arrive at `a` and are summed. `mr.viz.to_dot(y)` is
the Graphviz source (`mr.viz.draw(y, "graph.svg")` renders it where Graphviz is
installed); `mr.viz.plot` draws it with matplotlib.
"""),
    code("""
fig = mr.viz.plot(y, params={"a": a, "b": b}, fontsize=9)
fig.set_size_inches(4, 2.6)
dot = mr.viz.to_dot(y, params={"a": a, "b": b})
assert dot.count(" -> ") == 4     # a->Mul, b->Mul, Mul->Add and the second use a->Add
"""),
    md("""
`y.backward()` walks the graph from the output in topological order: every node is run
once, after *all* the gradient arriving at its output has been summed. By hand,
`y = a*b + a`, so `dy/da = b + 1 = 4` and `dy/db = a = 2`.
"""),
    code("""
y.backward()
print("dy/da =", a.grad, "  dy/db =", b.grad)
assert a.grad == 4.0 and b.grad == 2.0   # b + 1: the two uses of `a` add up
"""),
    md("""
## Why gradients accumulate

Two rules, both "sum":

1. **Within one backward**, a value used in several places gets the sum of the gradients
   of its uses (the chain rule for a fork). Above, `a` received `b` from the product and
   `1` from the sum.
2. **Across backward calls**, leaf gradients are *accumulated* into `.grad` (as in
   PyTorch), so you must clear them (`zero_grad`) between training steps.
"""),
    code("""
y2 = a * b + a
y2.backward()
print("after a second backward without zeroing:", a.grad)
assert a.grad == 8.0                      # 4 + 4
a.zero_grad(); b.zero_grad()
(a * b + a).backward()
assert a.grad == 4.0
print("after zero_grad and backward:", a.grad)
"""),
    md("""
## Writing your own op

A `Function` pairs a forward with its backward on plain ndarrays. `mr.gradcheck`
compares the backward with central finite differences (in float64).
"""),
    code("""
class Cube(mr.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad_out

x = mr.tensor(np.linspace(-1, 1, 5), requires_grad=True, dtype=np.float64)
Cube.apply(x).sum().backward()
print("d/dx sum(x^3) =", x.grad, " = 3x^2 =", 3 * x.data ** 2)
result = mr.gradcheck(lambda t: Cube.apply(t), [mr.tensor(np.random.randn(3, 4), requires_grad=True, dtype=np.float64)])
print(result)
assert result and np.allclose(x.grad, 3 * x.data ** 2)
"""),
    md("""
## A residual connection is a fork

Take a tiny "block" `y = x + relu(W x)`. The input is used twice: once by the identity,
once by the branch. So backward delivers `dL/dx = dL/dy + W^T (mask * dL/dy)`: the
first term reaches `x` **with no weight matrix in between**. Check it against the
engine, and split the two terms by detaching the branch.
"""),
    code("""
rng = np.random.default_rng(0)
W = mr.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True, dtype=np.float64)
x = mr.tensor(rng.standard_normal((1, 4)), requires_grad=True, dtype=np.float64)
g = rng.standard_normal((1, 4))          # pretend dL/dy from the layers above

y = x + (x @ W.T).relu()
y.backward(g)
mask = (x.data @ W.data.T) > 0
by_hand = g + (g * mask) @ W.data        # identity term + residual-branch term
print("engine :", x.grad)
print("by hand:", by_hand)
assert np.allclose(x.grad, by_hand, rtol=0, atol=1e-12)

# the identity term alone: backprop with the branch's output detached
x2 = mr.tensor(x.data, requires_grad=True, dtype=np.float64)
y2 = x2 + (x2 @ W.T).relu().detach()
y2.backward(g)
print("identity term only:", x2.grad, "== dL/dy:", np.array_equal(x2.grad, g))
assert np.array_equal(x2.grad, g)
"""),
    md("""
## Through depth: products vs sums

Stack `n` such blocks. A plain stack multiplies `n` Jacobians; a residual stack
multiplies `(1 + J_i)` terms, which expand into a *sum* over paths - one of which (all
identities) is the gradient itself, untouched. With small random weights the plain
product shrinks geometrically while the residual one does not.
"""),
    code("""
def grad_at_input(n, residual, scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = mr.tensor(rng.standard_normal((1, 16)), requires_grad=True, dtype=np.float64)
    h = x
    for _ in range(n):
        Wi = mr.tensor(rng.standard_normal((16, 16)) * scale / 4, dtype=np.float64)
        branch = (h @ Wi.T).relu()
        h = h + branch if residual else branch
    h.sum().backward()
    return np.linalg.norm(x.grad)

depths = [1, 2, 4, 8, 16, 32]
plain = [grad_at_input(n, False) for n in depths]
resid = [grad_at_input(n, True) for n in depths]
for n, p, r in zip(depths, plain, resid):
    print(f"n={n:>2}  plain |dL/dx| = {p:.3e}   residual |dL/dx| = {r:.3e}")
plt.figure(figsize=(5, 3))
plt.semilogy(depths, plain, "o--", label="plain: product of Jacobians")
plt.semilogy(depths, resid, "o-", label="residual: product of (1 + J)")
plt.xlabel("number of layers"); plt.ylabel("|dL/dx|"); plt.legend(); plt.tight_layout()
assert plain[-1] < 1e-10 * plain[0] and resid[-1] > 0.5 * resid[0]
"""),
    md("""
**Takeaway.** Autograd is a graph walk that sums gradients where a value fans out. A skip
connection is such a fan-out, so every residual block adds an identity term to the
gradient. Notebook 02 measures the same decomposition on a real ResNet.
"""),
]

# =====================================================================================
# 02 the residual formula on a real ResNet, gradient norms by depth
# =====================================================================================

NB02 = [
    md("""
# 02 - The residual formula: literal in a pre-activation ResNet, by paths in the original

For a stack of residual units with nothing after the addition - the *pre-activation*
units of He et al. (2016b), "Identity Mappings in Deep Residual Networks" -

$$a^{l_2} = a^{l_1} + \\sum_{i=l_1}^{l_2-1} F(a^i), \\qquad
\\frac{\\partial \\sigma}{\\partial a^{l_1}} = \\frac{\\partial \\sigma}{\\partial a^{l_2}}
\\Big(1 + \\frac{\\partial}{\\partial a^{l_1}} \\sum_i F(a^i)\\Big)$$

The first term - the **identity term** `I` - carries the gradient from `a^l2` down to
`a^l1` with no weight matrix in between; the second, the **residual term** `R`, goes
through the branches. `minires.analysis.decompose` computes both, block by block with the
blocks' own `residual()` and `shortcut()`, and checks them two ways that can fail:

1. `I + R` must equal the gradient the model's `backward()` produced;
2. `I` must equal a second backward in which the residual branches are detached.

**What you should see:** in the pre-activation net `preact_resnet20`, `I` *is*
`∂σ/∂a^l2`, bit for bit; in the original, post-activation `resnet20` the same split
exists only path by path, and its identity term is a ReLU-masked, smaller copy. Then
gradient norms by depth in pre-activation, post-activation and plain nets up to 1001
layers.
"""),
    code(SETUP),
    md("""
## The formula, literally: a pre-activation ResNet

A pre-activation unit is `a + F(a)` with `F = conv(relu(bn(conv(relu(bn(a))))))`: batchnorm
and ReLU come *before* each conv and nothing follows the add. Stage 1 of `preact_resnet20`
is three such units with identity shortcuts, so between its input `a^0` (the stem's
output) and its output `a^3` the formula above holds exactly.
"""),
    code("""
xs, ys = load_digits("train")
mean, std = xs.mean(), xs.std()
x = ((xs[:16] - mean) / std).astype(np.float64)
y = ys[:16]

mr.manual_seed(0)
pre = models.preact_resnet20(in_channels=1).double()   # 9 units, 3 per stage
print(pre.layer1[0], "\\n")
d1 = A.decompose(pre, x, y, l1=0, l2=3)                 # stage 1: a^0 .. a^3
print(d1)
print("\\nI == dσ/da^3, bit for bit:", np.array_equal(d1.identity, d1.grad_l2))
assert np.array_equal(d1.identity, d1.grad_l2)
assert d1.relative_error < 1e-12 and d1.identity_check_error == 0
"""),
    md("""
The identity term is not the larger one here: `R` collects what every unit's branch
adds, and at initialisation (batchnorm in training mode) that grows toward the input.
What the formula guarantees is a floor: `I` is `∂σ/∂a^3` itself, and the two terms are
nearly orthogonal (`cos(I, R)` ~ 0), so `|∂σ/∂a^0|² ≈ |I|² + |R|² ≥ |∂σ/∂a^3|²` - the
upstream gradient arrives whole and the branches do not cancel it.
"""),
    code("""
print(f"|full|^2 = {d1.norm_full**2:.4e}   |I|^2 + |R|^2 = {d1.norm_identity**2 + d1.norm_residual**2:.4e}"
      f"   |dσ/da^3|^2 = {np.sum(d1.grad_l2**2):.4e}   cos(I, R) = {d1.cosine:+.4f}")
assert abs(d1.cosine) < 0.2 and d1.norm_full > d1.norm_identity
"""),
    md("""
### Across stages: option A

Where a stage halves the resolution and doubles the channels, the basic pre-activation
net uses the parameter-free option-A shortcut on the raw input: subsample `x[:, :, ::2,
::2]`, append zero channels. Its backward keeps the gradient of the original channels at
the kept positions and drops the rest. So over the whole net `I` is still weight-free
and exact - it is option A's transpose applied to `∂σ/∂a^9` - but smaller. Within a stage
`|I|` is flat (nothing touches it); it steps down at each option-A shortcut.
"""),
    code("""
dp = A.decompose(pre, x, y)                    # a^0 .. a^9, across both stage changes
print(dp.table())

def option_a_T(g, c_in):
    \"\"\"The backward of option A, written out: (N, 2C, H, W) -> (N, C, 2H, 2W).\"\"\"
    out = np.zeros((g.shape[0], c_in, 2 * g.shape[2], 2 * g.shape[3]))
    out[:, :, ::2, ::2] = g[:, :c_in]
    return out

assert np.array_equal(dp.identity, option_a_T(option_a_T(dp.grad_l2, 32), 16))
print(f"\\nI == option-A^T option-A^T dσ/da^9 exactly; |I| / |dσ/da^9| = {dp.identity_ratio:.3f}")
"""),
    md("""
## The contrast: the original, post-activation ResNet

In He et al.'s 2015 ResNet a unit is `relu(F(a) + shortcut(a))`: a ReLU sits after every
add, on the identity path. `a^l2` is no longer `a^l1 + Σ F`, and `decompose` defines the
split by paths instead: backprop through a block is exactly a pass through its branch
plus a pass through its shortcut, each after the ReLU mask; `I` is the one path through
every shortcut. It is `∂σ/∂a^l2` with every post-add ReLU's mask applied - entries are
zeroed, none is changed otherwise.
"""),
    code("""
mr.manual_seed(0)
post = models.resnet20(in_channels=1).double()
r1 = A.decompose(post, x, y, l1=0, l2=3)       # the same stage-1 boundaries
dr = A.decompose(post, x, y)
print(r1)
masked = r1.identity != r1.grad_l2
print(f"\\nstage 1: |I| / |dσ/da^3| = {r1.identity_ratio:.3f} (pre-activation: {d1.identity_ratio:.3f}); "
      f"{masked.mean():.0%} of the entries of dσ/da^3 are zeroed on the way down")
assert np.all(r1.identity[masked] == 0) and r1.identity_ratio < 0.9
assert r1.relative_error < 1e-12 and dr.relative_error < 1e-12
"""),
    code("""
print(A.compare_decompositions({"preact_resnet20": dp, "resnet20": dr}))
A.plot_decompositions({"preact_resnet20 (pre-activation)": dp, "resnet20 (post-activation)": dr},
                      title="|I|, |R| and the full gradient at each block boundary (init)");
"""),
    md("""
Why the post-activation net's identity term is small:

* **the ReLU masks after the adds** zero it wherever `F(a) + a < 0`, unit after unit -
  in stage 1 alone, on a path of identity shortcuts, more than half of the entries of
  `∂σ/∂a^3` are zeroed and `|I|` is 0.69 of `|∂σ/∂a^3|` (on the right `|I|` decays inside
  every stage; on the left it is flat);
* **the option-A shortcuts** drop the gradient of the padded channels and of 3 in 4
  positions - in both nets. That is the only loss in the pre-activation net, and why
  across the whole net its identity term is small too: the literal formula is the one
  within a stage.

### Bottleneck units and projections: preact_resnet164

The deep pre-activation nets (`preact_resnet164`, `preact_resnet1001`) use bottleneck
units and, where a stage starts, a 1x1 projection conv applied to the *pre-activated*
input (the unit's first BN-ReLU is then shared by both paths). Through those three
units the "shortcut" path crosses a conv and a BN-ReLU, so `I` is no longer weight-free
(`parameter_free` is False) - the decomposition still sums exactly. Over the identity
units of a stage the formula is literal again.
"""),
    code("""
mr.manual_seed(0)
p164 = models.preact_resnet164(in_channels=1).double()     # 3 x 18 bottleneck units
db = A.decompose(p164, x[:8], y[:8])                       # a^0 .. a^54
print("shortcuts:", {k: db.shortcuts.count(k) for k in set(db.shortcuts)},
      f"  parameter_free: {db.parameter_free}   relative error {db.relative_error:.1e}")
ds = A.decompose(p164, x[:8], y[:8], l1="layer2.1", l2="layer3.0")   # stage 2's identity units
print(f"layer2.1 .. layer2.17: I == dσ/da^l2 exactly: {np.array_equal(ds.identity, ds.grad_l2)}"
      f"   relative error {ds.relative_error:.1e}")
assert not db.parameter_free and db.relative_error < 1e-12
assert np.array_equal(ds.identity, ds.grad_l2) and ds.relative_error < 1e-12
"""),
    md("""
## Gradient norms by depth: pre-activation, post-activation, plain

The plain twins (`plain20 ... plain110`) have the same layers as the post-activation
nets without the skips. Measure `||∂σ/∂a^k||` at every block input at initialisation,
with batchnorm in training mode, on a batch of 8x8 digits - for depth 56 and 110 in all
three families, and for the 1001-layer pre-activation net. (1001, not 164: building it
and measuring its gradient takes a few seconds here - timed below - well inside this
notebook's 3-minute budget.)

The folklore says deep plain nets suffer from *vanishing* gradients. With batchnorm,
the engine shows the opposite: the gradient **explodes toward the input** - every
conv-BN-ReLU layer multiplies the backward signal by a factor a little above 1 and the
factors compound. The residual nets stay within a much smaller band.
"""),
    code("""
import time

xb, yb = ((xs[:8] - mean) / std), ys[:8]
nets = {}
for depth in (56, 110):
    for kind in ("preact", "resnet", "plain"):
        mr.manual_seed(0)
        nets[f"{kind}{depth}"] = (models.preact_resnet(depth, in_channels=1) if kind == "preact" else
                                  models.cifar_resnet(depth, in_channels=1, plain=kind == "plain"))
fig, axes = plt.subplots(1, 3, figsize=(17, 4))
comp56 = A.compare_gradient_flow({k: nets[k] for k in ("preact56", "resnet56", "plain56")}, xb, yb,
                                 ax=axes[0], title="depth 56, batchnorm, init")
comp110 = A.compare_gradient_flow({k: nets[k] for k in ("preact110", "resnet110", "plain110")}, xb, yb,
                                  ax=axes[1], title="depth 110, batchnorm, init")
t = time.perf_counter()
mr.manual_seed(0)
p1001 = models.preact_resnet1001(in_channels=1)           # 333 bottleneck units, 10.3 M parameters
comp1001 = A.compare_gradient_flow({"preact1001": p1001}, xb, yb, ax=axes[2],
                                   title="preact_resnet1001, batchnorm, init")
print(f"preact_resnet1001: built and measured in {time.perf_counter() - t:.1f} s\\n")
print(comp56); print(comp110); print(comp1001)
"""),
    code("""
g = {f.name: f for f in comp56.flows + comp110.flows + comp1001.flows}
for name, f in g.items():
    per_unit = f.first_last_ratio ** (1 / (len(f.grad_in) - 1))
    print(f"{name:>10}: first block / last block = {f.first_last_ratio:10.3g}"
          f"   (x{per_unit:.3f} per block on average, {len(f.grad_in)} blocks)")
# plain: explosion toward the input, by orders of magnitude, growing with depth
assert g["plain56"].first_last_ratio > 1e3 and g["plain110"].first_last_ratio > 1e6
# post-activation residual: a modest, slowly growing factor
assert g["resnet56"].first_last_ratio < 100 and g["resnet110"].first_last_ratio < 300
assert g["plain56"].spread > 10 * g["resnet56"].spread
# pre-activation: grows with depth too, but far less per unit than plain
assert g["preact56"].first_last_ratio < g["preact110"].first_last_ratio < g["preact1001"].first_last_ratio
assert g["preact1001"].first_last_ratio < g["plain110"].first_last_ratio
"""),
    md("""
The pre-activation nets' gradient also grows toward the input at initialisation - and
with depth: ~10^2 in preact56 and preact110, ~10^6 over the 333 units of preact1001 -
but not like the plain nets'. Look at the factor by which each unit multiplies the
gradient, `g_k / g_{k+1}`: plain110's blocks all multiply by about the same factor
(geometric growth); a pre-activation unit's factor is large only at the start of a
stage and falls toward 1 along it. Each unit's branch begins with a batchnorm, which
divides by the spread of the unit's input. At the start of stage 1 that input is the
stem's output, which is small (no BN after the stem); at the start of stages 2 and 3 it
is the projection's output, small again. Every unit adds its branch to the identity
path, the activations grow along the stage, and the later units divide by ever larger
spreads and add ever less. (The units that change the stage shrink the gradient: in
preact1001 the projection's shared BN-ReLU divides by the large spread the previous stage
built up; in preact110 option A drops 3 in 4 positions.) The identity
term is not what grows - it passes `∂σ/∂a^l2` unchanged; the residual term adds the
rest.
"""),
    code("""
def unit_factors(f):
    return f.grad_in[:-1] / f.grad_in[1:]

fig, ax = plt.subplots(figsize=(8, 3.5))
for name in ("plain110", "resnet110", "preact110", "preact1001"):
    fac = unit_factors(g[name])
    ax.plot(np.linspace(0, 1, len(fac)), fac, ".-" if name != "preact1001" else "-", ms=3, label=name)
ax.set(yscale="log", xlabel="block position (fraction of the depth, 0 = input)",
       ylabel="g_k / g_(k+1)", title="gradient growth per block at init")
ax.axhline(1, color="gray", lw=0.8); ax.legend(fontsize=8);

pf, qf = unit_factors(g["plain110"]), unit_factors(g["preact1001"])
n = len(p1001.layer1)                                      # 111 units per stage
print(f"plain110: median factor per block {np.median(pf):.3f}; preact1001: median {np.median(qf):.4f}")
for s in range(3):
    print(f"  preact1001 stage {s + 1}: units 0-4 x" + " x".join(f"{v:.2f}" for v in qf[s * n : s * n + 5])
          + f" ... second half median x{np.median(qf[s * n + n // 2 : (s + 1) * n]):.3f}")
assert np.median(pf) > 1.2 and np.median(qf) < 1.05
assert qf[0] == qf.max() and qf[0] > 2 and qf[n] < 1 and qf[2 * n] < 1   # stem start; projections
assert all(qf[s * n + 1] > 1.2 and np.median(qf[s * n + n // 2 : (s + 1) * n]) < 1.03 for s in range(3))

# the activations it divides by: rms of the input of every unit (forward only)
with mr.no_grad():
    a, rms = p1001.conv1(mr.tensor(xb.astype(np.float32))), []
    for unit in [*p1001.layer1, *p1001.layer2, *p1001.layer3]:
        rms.append(float(np.sqrt(np.mean(a.data ** 2))))
        a = unit(a)
print("activation rms at units 0, 1, 2 of stage 1:", [f"{v:.2f}" for v in rms[:3]],
      f"... at its end {rms[n - 1]:.2f}; after the stage-2 projection {rms[n + 1]:.2f}")
assert rms[0] < rms[1] < rms[2] < rms[n - 1] and rms[n + 1] < rms[n - 1] / 3
"""),
    md("""
The same story per conv layer: the norm of the weight gradient of each of the 55 convs
(`quantity="conv_grad"`). In plain56 the first convs receive gradients thousands of
times larger than the last ones - a single learning rate cannot suit them all.
"""),
    code("""
A.plot_gradient_flow(comp56.flows, quantity="conv_grad", title="depth 56: weight-gradient norm per conv");
print(f"conv weight-gradient spread: preact56 {g['preact56'].conv_spread:.3g}x, "
      f"resnet56 {g['resnet56'].conv_spread:.3g}x, plain56 {g['plain56'].conv_spread:.3g}x")
assert g["plain56"].conv_spread > 10 * g["resnet56"].conv_spread
"""),
    md("""
### The same nets without batchnorm

Strip every BN layer (`A.strip_batchnorm`) and the picture flips:

* the **plain** nets now *vanish* toward the input (the textbook picture) - on these 8x8
  images mostly in the last stage: on its 2x2 feature maps 5 of the 9 taps of every 3x3
  kernel fall on zero padding, so each layer shrinks the signal that the Kaiming init
  meant to preserve; on 32x32 inputs the decay is much milder;
* the **residual** nets *explode*, forward and backward: every block adds a branch of
  comparable variance to the identity, so the activations (and the loss) grow with depth.
  This is why ResNets need BN, careful init (Fixup, zero-init of the last BN) or
  normalisation of some kind.
"""),
    code("""
nobn = {}
for depth in (56, 110):
    for kind in ("resnet", "plain"):
        mr.manual_seed(0)
        m = models.cifar_resnet(depth, in_channels=1, plain=kind == "plain")
        nobn[f"{kind}{depth}-noBN"] = A.strip_batchnorm(m)
fig, ax = plt.subplots(figsize=(7, 4))
comp_nobn = A.compare_gradient_flow(nobn, xb, yb, ax=ax, title="without batchnorm, init")
print(comp_nobn)
h = {f.name: f for f in comp_nobn.flows}
assert h["plain56-noBN"].first_last_ratio < 1e-2 and h["plain110-noBN"].first_last_ratio < 1e-5
assert h["resnet56-noBN"].first_last_ratio > 10 and h["resnet110-noBN"].loss > 100
"""),
    code("""
# the same without BN on 32x32 inputs: the plain net's decay is mild there
x32 = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
mr.manual_seed(0)
p32 = A.gradient_flow(A.strip_batchnorm(models.plain56(in_channels=1)), x32, np.arange(4),
                      name="plain56-noBN @32x32")
print(p32)
assert p32.first_last_ratio > 100 * h["plain56-noBN"].first_last_ratio
"""),
    md("""
### After some training

A few SGD steps (same measurement batch, BN on) reshape the profiles: the plain net's
explosion shrinks quickly, yet - as notebook 04 shows - deep plain nets still train
worse than shallow ones. **Normalisation tamed the vanishing/exploding gradients; it did
not remove the degradation problem.** Skips fix the latter.
"""),
    code("""
batches = [((xs[i:i + 32] - mean) / std, ys[i:i + 32]) for i in range(0, 32 * 8, 32)]
pair = {}
for name, build in (("preact20", models.preact_resnet20), ("resnet20", models.resnet20),
                    ("plain20", models.plain20)):
    mr.manual_seed(0)
    pair[name] = build(in_channels=1)
comp_t = A.compare_gradient_flow(pair, xb, yb, train_batches=batches, steps=8, lr=0.05,
                                 title="depth 20: init vs after 8 SGD steps")
print(comp_t)
assert comp_t.get("plain20", "step 8").first_last_ratio < comp_t.get("plain20", "init").first_last_ratio
"""),
]

NB02_GRAPH = [
    md("""
## Appendix: a residual block's graph, drawn

`mr.viz.trace(block)` tags every op the block creates with the part of the block it
belongs to; `mr.viz.plot(..., color_paths=True)` then colours the **residual path**
F(x) orange and the **identity path** blue (here the option-A shortcut: subsample, pad
with zero channels). Forward, the two paths merge at the add. Backward, the add hands
the same gradient to both paths, and they meet again at the block's input (double
border): its gradient is the identity term plus the residual term - checked below.
"""),
    code("""
mr.manual_seed(0)
block = models.BasicBlock(8, 16, stride=2, downsample=models.ShortcutA(8, 16, 2))
x = mr.tensor(np.random.default_rng(0).standard_normal((4, 8, 8, 8)).astype(np.float32),
              requires_grad=True)
with mr.viz.trace(block):
    out = block(x)
fig = mr.viz.plot(out, color_paths=True, show_params=False, fontsize=8)
fig.set_size_inches(7, 6)
dot = mr.viz.to_dot(out, color_paths=True)
assert dot.count(mr.viz.IDENTITY_COLOR) == 3    # x -> subsample -> pad -> add

g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
out.backward(g)
g_sum = g * (out.data > 0)                    # the gradient after the final ReLU, at the add
x_id = mr.tensor(x.data, requires_grad=True)
block.shortcut(x_id).backward(g_sum)          # identity path alone
x_res = mr.tensor(x.data, requires_grad=True)
block.residual(x_res).backward(g_sum)         # residual path alone
print("max |x.grad - (identity + residual)| =", np.abs(x.grad - x_id.grad - x_res.grad).max())
assert np.allclose(x.grad, x_id.grad + x_res.grad, atol=1e-5)
"""),
]

# =====================================================================================
# 03 convolution, grouped convolution, depthwise convolution
# =====================================================================================

NB03 = [
    md("""
# 03 - Convolution, grouped convolution, depthwise convolution

A 2-D convolution with `groups = g` splits the `C_in` input channels and `C_out` output
channels into `g` groups and connects each output channel only to the `C_in / g` input
channels of its group. `g = 1` is the ordinary dense conv; `g = C_in` is a **depthwise**
conv (every channel filtered on its own); ResNeXt's bottleneck uses `g = 32`.

**What you should see:** the connectivity patterns measured by the engine (block
diagonal), the parameter and mult-add counts `C_out * C_in/g * k * k (* H_out * W_out)`,
ResNeXt's Table 1 budget, and every variant passing a gradient check.
"""),
    code(SETUP),
    md("""
## What each kernel connects - measured, not drawn

Which input channels influence output channel `o`? Ask autograd: backpropagate a
gradient that is 1 on output channel `o` only, and see which input channels receive a
non-zero gradient.
"""),
    code("""
def connectivity(c_in, c_out, groups):
    \"\"\"(C_out, C_in) boolean matrix: does input channel c reach output channel o?\"\"\"
    rng = np.random.default_rng(0)
    w = mr.tensor(rng.standard_normal((c_out, c_in // groups, 3, 3)), dtype=np.float64)
    conn = np.zeros((c_out, c_in), bool)
    for o in range(c_out):
        x = mr.tensor(rng.standard_normal((1, c_in, 5, 5)), requires_grad=True, dtype=np.float64)
        out = F.conv2d(x, w, padding=1, groups=groups)
        seed = np.zeros(out.shape); seed[:, o] = 1.0
        out.backward(seed)
        conn[o] = np.abs(x.grad).sum(axis=(0, 2, 3)) > 0
    return conn

C = 8
cases = {"dense (g=1)": 1, "grouped (g=4)": 4, "depthwise (g=C)": C}
conns = {name: connectivity(C, C, g) for name, g in cases.items()}
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, (name, conn) in zip(axes, conns.items()):
    ax.imshow(conn, cmap="Blues", vmin=0, vmax=1)
    ax.set_title(f"{name}: {conn.sum()} links"); ax.set_xlabel("input channel"); ax.set_ylabel("output channel")
plt.tight_layout()
for name, g in cases.items():
    conn = conns[name]
    assert conn.sum() == C * C // g                                     # C_out * C_in / g links
    assert all(conn[o, c] == (o // (C // g) == c // (C // g)) for o in range(C) for c in range(C))
"""),
    md("""
## Parameters and mult-adds

For a conv with kernel `k x k`, each output value costs `C_in/g * k * k` multiply-adds,
so

* parameters = `C_out * (C_in / g) * k * k` (+ `C_out` if there is a bias),
* mult-adds  = parameters (without bias) `* H_out * W_out`.

Grouping divides both by `g` at the same width. Since both counts grow with
`C_in * C_out`, at a fixed budget `g` groups buy layers about `sqrt(g)` times wider -
the trade ResNeXt makes.
"""),
    code("""
H = W = 56
print(f"{'conv':<28} {'params':>10} {'mult-adds':>14}")
for name, (c_in, c_out, g) in {
    "dense 256->256 3x3": (256, 256, 1),
    "grouped 256->256 3x3 g=32": (256, 256, 32),
    "depthwise 256 3x3 g=256": (256, 256, 256),
    "pointwise 256->256 1x1": (256, 256, 1),
}.items():
    k = 1 if "1x1" in name else 3
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=g, bias=False)
    s = mr.summary(conv, (c_in, H, W))
    formula = c_out * (c_in // g) * k * k
    print(f"{name:<28} {s.total_params:>10,} {s.total_macs:>14,}")
    assert s.total_params == formula and s.total_macs == formula * H * W
"""),
    md("""
## ResNeXt's Table 1: same budget, 32 groups

ResNeXt-50 (32x4d) replaces each bottleneck's 3x3 conv by a 32-group conv of 4 channels
per group, widening the bottleneck (e.g. 128 instead of 64 in stage 1) at almost the
same cost as ResNet-50: the paper lists 25.5M vs 25.0M parameters and 4.1 vs 4.2
GFLOPs (mult-adds). `mr.summary` counts them from the models (shapes only, no compute).
"""),
    code("""
r50 = mr.summary(models.resnet50(), (3, 224, 224))
x50 = mr.summary(models.resnext50_32x4d(), (3, 224, 224))
print(f"{'':<18} {'params':>12} {'mult-adds':>14}")
for name, s in (("ResNet-50", r50), ("ResNeXt-50 32x4d", x50)):
    print(f"{name:<18} {s.total_params/1e6:>11.2f}M {s.total_macs/1e9:>13.2f}G")
assert abs(r50.total_params / 1e6 - 25.56) < 0.01 and abs(x50.total_params / 1e6 - 25.03) < 0.01
assert abs(r50.total_macs / 1e9 - 4.1) < 0.1 and abs(x50.total_macs / 1e9 - 4.2) < 0.1
b1, b2 = models.resnet50().layer1[0], models.resnext50_32x4d().layer1[0]
print("stage-1 bottleneck 3x3 conv:", b1.conv2, "vs", b2.conv2)
"""),
    md("""
## Gradient check of each variant

The backward of conv2d is hand-written (input and weight gradients through im2col /
col2im, per group). `mr.gradcheck` compares it with finite differences in float64.
"""),
    code("""
rng = np.random.default_rng(0)
for name, (c_in, c_out, g, stride) in {
    "dense": (4, 6, 1, 1),
    "grouped g=2, stride 2": (4, 6, 2, 2),
    "depthwise g=C_in": (4, 8, 4, 1),
}.items():
    x = mr.tensor(rng.standard_normal((2, c_in, 5, 5)), requires_grad=True, dtype=np.float64)
    w = mr.tensor(rng.standard_normal((c_out, c_in // g, 3, 3)), requires_grad=True, dtype=np.float64)
    b = mr.tensor(rng.standard_normal(c_out), requires_grad=True, dtype=np.float64)
    res = mr.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=1, groups=g), [x, w, b])
    print(f"{name:<24}", "ok" if res else "FAILED")
    assert res
"""),
]

# =====================================================================================
# 04 degradation
# =====================================================================================

NB04 = [
    md("""
# 04 - Degradation: deeper plain nets train worse

He et al. (2015) observed that a 56-layer plain net has *higher training error* than a
20-layer one - not overfitting, an optimisation problem - while the residual versions
improve with depth. Here the same experiment in miniature on the embedded 8x8 digits:
narrow CIFAR-style nets (`A.toy_resnet`, built from the same `BasicBlock` /
`PlainBasicBlock` and option-A shortcuts) of 8 and 32 layers, plain and residual, the
same SGD steps for all.

**What you should see:** the deep plain net's training error stays well above the
shallow plain net's; the deep residual net trains about as fast as the shallow nets -
depth no longer hurts.
"""),
    code(
        SETUP
        + """
from minires.analysis.toy import toy_resnet
from minires.optim import SGD"""
    ),
    code("""
xs, ys = load_digits("train")
mean, std = xs.mean(), xs.std()
xs = (xs - mean) / std
STEPS, BS = 100, 64
rng = np.random.default_rng(0)
batches = [tuple(a[idx] for a in (xs, ys)) for idx in (rng.choice(len(xs), BS, replace=False) for _ in range(STEPS))]

configs = {"plain 8": ((1, 1, 1), True), "plain 32": ((5, 5, 5), True),
           "resnet 8": ((1, 1, 1), False), "resnet 32": ((5, 5, 5), False)}
curves, nets = {}, {}
for name, (blocks, plain) in configs.items():
    mr.manual_seed(0)
    net = toy_resnet(blocks, (8, 16, 32), plain=plain)
    opt = SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    errs = []
    for xb, yb in batches:
        opt.zero_grad()
        logits = net(mr.Tensor(xb))
        F.cross_entropy(logits, yb).backward()
        opt.step()
        errs.append(float(np.mean(np.argmax(logits.data, 1) != yb)))
    curves[name], nets[name] = np.array(errs), net
    print(f"{name:>10}: {STEPS} steps, training error on the last 30 batches {np.mean(errs[-30:]):.3f}")
"""),
    code("""
def smooth(e, k=15):
    return np.convolve(e, np.ones(k) / k, mode="valid")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, kind in zip(axes, ("plain", "resnet")):
    for name, e in curves.items():
        if name.startswith(kind):
            ax.plot(smooth(e), "--" if "8" == name.split()[1] else "-", label=name)
    ax.set_title(f"{kind} nets: training error (moving average)"); ax.set_xlabel("SGD step")
    ax.legend()
axes[0].set_ylabel("training error"); plt.tight_layout()

final = {name: A.evaluate(net, xs, ys) for name, net in nets.items()}
for name, acc in final.items():
    print(f"{name:>10}: training error after {STEPS} steps {1 - acc:.3f}   (last 30 batches {curves[name][-30:].mean():.3f})")
"""),
    code("""
err = {k: 1 - v for k, v in final.items()}
assert err["plain 32"] > err["plain 8"] + 0.1          # degradation: deeper plain is worse
assert err["resnet 32"] <= err["plain 8"] + 0.02         # residual learning fixes it
assert err["resnet 32"] < err["plain 32"] - 0.1
"""),
    md("""
The deep plain net is not short of gradient (notebook 02: with batchnorm it has *too
much* near the input), yet it optimises worse. The residual net of the same depth and
the same parameters does not. Notebook 05 looks at why: a residual net behaves like an
ensemble of many shallower paths.
"""),
]

# =====================================================================================
# 05 lesion and ensembles of paths
# =====================================================================================

NB05 = [
    md("""
# 05 - Lesion study and the ensemble of paths (Veit et al. 2016)

Unroll `n` residual blocks: each block is either entered or skipped, so the network is a
collection of `2^n` paths of different lengths. Veit, Wilber & Belongie (2016) showed two
consequences:

1. **Lesion**: deleting one residual block of a trained ResNet (keeping its shortcut)
   barely hurts accuracy - half of the paths survive - while deleting a layer of a plain
   net breaks its only path.
2. **Effective paths**: the gradient through a path shrinks with every residual branch
   it crosses, so although most paths are long (lengths are Binomial(n, 1/2)), the
   gradient during training comes from relatively short ones.

**What you should see:** the residual net keeps most of its accuracy for almost every
deleted block; the plain net collapses to chance; gradient magnitude per path decays
exponentially with length, and the total gradient peaks at lengths well below n/2.
"""),
    code(
        SETUP
        + """
from minires.analysis.toy import toy_resnet"""
    ),
    code("""
xs, ys = load_digits("train"); xt, yt = load_digits("test")
mean, std = xs.mean(), xs.std()
xs, xt = (xs - mean) / std, (xt - mean) / std
rng = np.random.default_rng(0)
batches = [(xs[i], ys[i]) for i in (rng.choice(len(xs), 64, replace=False) for _ in range(100))]

trained = {}
for name, plain in (("resnet", False), ("plain", True)):
    mr.manual_seed(0)
    net = toy_resnet((3, 3, 3), (8, 16, 32), plain=plain)   # resnet20's layout, narrow
    A.train_steps(net, batches, len(batches), lr=0.05)
    trained[name] = net
    print(f"{name}: test accuracy {A.evaluate(net, xt, yt):.3f}")
"""),
    code("""
# recalibrate: also evaluate each lesioned net with its BN statistics re-estimated on
# training images (weights untouched) - see below
les_res = A.lesion_study(trained["resnet"], xt, yt, name="resnet (9 blocks)", recalibrate=xs[:512])
les_plain = A.lesion_study(trained["plain"], xt, yt, name="plain (9 blocks)")
print(les_res); print(); print(les_plain)
A.plot_lesion([les_res, les_plain], title="accuracy with one block deleted");
"""),
    code("""
kept = [r for r in les_res.rows if not r["downsampling"]]
# as stored: most deletions cost little
assert np.median([r["accuracy"] for r in kept]) > 0.9 * les_res.baseline
# with BN statistics re-estimated: every non-downsampling deletion keeps most of the accuracy
assert min(r["accuracy_recalibrated"] for r in kept) > 0.7 * les_res.baseline_recalibrated
assert max(les_plain.accuracies) < 2 * les_plain.chance     # the only path is cut
"""),
    md("""
Downsampling blocks (open circles) hurt more: their shortcut only sub-samples and
zero-pads. The **first** block, right after the one-conv stem, can hurt a lot too - but
look at the "BN re-est." column: once the batchnorm layers downstream get running
statistics measured *without* the deleted block (a forward pass over some training
images, no weight changes), most of that damage disappears. The stored statistics
assumed every block was present; the ensemble itself survives the deletion. (Veit's
54-block ResNet-110 is also far more redundant than this 9-block net.)

Replacing a plain block by the identity where shapes allow - a skip the plain net never
had - is no better: its layers depend on each other.
"""),
    code("""
les_id = A.lesion_study(trained["plain"], xt, yt, name="plain, block -> identity", plain_mode="identity")
print(les_id)
assert np.median(les_id.accuracies) < 0.5 * les_id.baseline
"""),
    md("""
## Paths: how many of each length, and how much gradient they carry

With `n = 27` blocks (resnet56) there are `C(27, k)` paths of length `k`. Veit's
measurement: pick `k` blocks at random, backpropagate through the residual branch of
those and the shortcut of all others, and record the gradient norm at the first block.
"""),
    code("""
mr.manual_seed(0)
r56 = models.resnet56(in_channels=1)
pg = A.path_gradients(r56, xs[:8], ys[:8], lengths=range(0, 28), samples=3)
print(pg)
A.plot_paths(pg);
"""),
    code("""
lo, hi = pg.effective_range(0.9)
print(f"one path's gradient shrinks by x{pg.decay_per_block:.2f} per residual branch")
print(f"90% of the total gradient comes from paths of length {lo}..{hi}, peak at {pg.peak_length}; "
      f"mean path length is {pg.n / 2}")
assert pg.decay_per_block < 0.9                   # exponential decay with length
assert pg.peak_length < pg.n / 2                  # short paths carry the gradient
assert pg.per_path[0] > 100 * pg.per_path[-1]
"""),
    md("""
The distribution of path lengths (a) is centred on n/2 = 13.5, but one path's gradient
(b) falls by a roughly constant factor per residual branch, so the gradient actually
delivered by all paths of each length (c) is shifted toward shorter paths. (Veit et al.
measured a trained ResNet-110, 54 blocks: most gradient from paths of length 5-17. Here
it is resnet56 at initialisation; run `A.path_gradients` on a trained net to compare.) A deep ResNet trains
like an ensemble of relatively shallow networks - and deleting one block only removes
some members of the ensemble.
"""),
]

# =====================================================================================
# 06 split, transform, merge
# =====================================================================================

NB06 = [
    md("""
# 06 - Split, transform, merge: ResNeXt's three equivalent forms

Xie et al. (2017) start from the simplest neuron: `w . x = sum_i w_i x_i` **splits** the
input into its D coordinates, **transforms** each (a scaling by `w_i`) and **merges** them
(a sum). A ResNeXt block does the same with C whole transformations, the paths:
`y = x + sum_{i=1..C} T_i(x)`. The paper's Fig. 3 draws that block three ways that are
one function - (a) C paths summed, (b) the paths' first layers concatenated before one
1x1 conv, (c) one grouped convolution - and Table 3 trades cardinality C against path
width d at the same cost.

**What you should see:** the three forms give the same outputs and gradients (to
~1e-15 in float64) with the same parameters, yet (a) records 26x as many ops as (c) and
runs slower; dense, grouped and depthwise-separable convolution at one FLOP budget; the
Table 1 and Table 3 counts; the cardinality ablation at small scale, with its honest
verdict; and the graphs of forms (a) and (c).
"""),
    code(SETUP + """
import json, time
from pathlib import Path
from minires.models import Bottleneck, ResNeXtConcat, ResNeXtPaths
RESULTS = Path("..") / "docs" / "results\""""),
    md("""
## The neuron is already split-transform-merge

`F.linear` computes `w . x` in one matrix product; written as split (take coordinate
`i`), transform (`w_i x_i`) and merge (sum), it is the same number. A ResNeXt block
replaces `w_i x_i` by a small network `T_i` and keeps the sum.
"""),
    code("""
rng = np.random.default_rng(0)
x = mr.tensor(rng.standard_normal((1, 6)), dtype=np.float64)
w = mr.tensor(rng.standard_normal((1, 6)), dtype=np.float64)
split = [x[:, i] for i in range(6)]                          # split
transformed = [w.data[0, i] * xi for i, xi in enumerate(split)]  # transform
merged = sum(transformed[1:], transformed[0])                 # merge
print("sum_i w_i x_i =", merged.data, "  F.linear =", F.linear(x, w).data.ravel())
assert np.allclose(merged.data, F.linear(x, w).data.ravel())
"""),
    md("""
## The three forms, built from one grouped block and checked equal

`Bottleneck(256, 64, groups=32, base_width=4)` is ResNeXt-50's conv2 block, form (c):
1x1 256->128, 3x3 in 32 groups of 4 channels, 1x1 128->256. `ResNeXtPaths.from_bottleneck`
(form a) and `ResNeXtConcat.from_bottleneck` (form b) copy its weights slice by slice:
path `i` gets output channels `4i..4i+3` of conv1 and conv2, the same slice of bn1/bn2
(weights *and* running statistics) and, in form (a), input channels `4i..4i+3` of
conv3 - because a 1x1 conv over 128 channels is the sum of 32 1x1 convs over 4 channels
each. In float64 the outputs, the input gradient and every parameter gradient (mapped
back to form (c)'s names by `bottleneck_state_dict`) agree.
"""),
    code("""
mr.manual_seed(0)
block_c = Bottleneck(256, 64, groups=32, base_width=4).double()
forms = {"(c) grouped conv": block_c,
         "(b) concatenated paths": ResNeXtConcat.from_bottleneck(block_c),
         "(a) summed paths": ResNeXtPaths.from_bottleneck(block_c)}
x = np.random.default_rng(0).standard_normal((2, 256, 6, 6))
g = np.random.default_rng(1).standard_normal((2, 256, 6, 6))
results = {}
for name, blk in forms.items():
    xt = mr.tensor(x, requires_grad=True)
    out = blk(xt)
    ops = len(list(mr.autograd.iter_graph(out)))
    out.backward(g)
    grads = {n: p.grad for n, p in blk.named_parameters()}
    if name != "(c) grouped conv":
        grads = blk.bottleneck_state_dict(grads)
    results[name] = (out.data, xt.grad, grads, ops, sum(p.data.size for p in blk.parameters()))

ref = results["(c) grouped conv"]
print(f"{'form':<24} {'params':>8} {'ops/forward':>12} {'max|out diff|':>14} {'max|grad diff|':>15}")
for name, (out, gx, grads, ops, n) in results.items():
    d_out = np.abs(out - ref[0]).max()
    d_grad = max(np.abs(gx - ref[1]).max(), *(np.abs(grads[k] - ref[2][k]).max() for k in ref[2]))
    print(f"{name:<24} {n:>8,} {ops:>12} {d_out:>14.1e} {d_grad:>15.1e}")
    assert n == ref[4] and d_out < 1e-10 and d_grad < 1e-10
assert [r[3] for r in results.values()] == [10, 197, 258]
"""),
    md("""
Same parameters, same function - but form (a) records 258 ops per forward and form (b)
197, against 10 for form (c). Each path is a 1x1 conv to 4 channels, a 4-channel 3x3
conv and (form a) a 1x1 conv back to 256 channels, run one after another from a Python
loop: matrix products 4 rows thin, each paying its dispatch and autograd bookkeeping. Form
(a) also writes 32 full-size partial outputs and adds them up. A quick timing here
(float32, NumPy reference kernels, batch 4 at 14x14):
"""),
    code("""
def step_time(blk, x, reps=3):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        out = blk(mr.tensor(x, requires_grad=True))
        out.backward(np.ones(out.shape, np.float32))
        best = min(best, time.perf_counter() - t)
    return best

x32 = np.random.default_rng(0).standard_normal((4, 256, 14, 14)).astype(np.float32)
b32 = Bottleneck(256, 64, groups=32, base_width=4)
times = {"(c) grouped conv": step_time(b32, x32),
         "(b) concatenated paths": step_time(ResNeXtConcat.from_bottleneck(b32), x32),
         "(a) summed paths": step_time(ResNeXtPaths.from_bottleneck(b32), x32)}
for name, t in times.items():
    print(f"{name:<24} {1e3 * t:7.1f} ms   {t / times['(c) grouped conv']:5.1f}x form (c)")
"""),
    md("""
The benchmark (`minires bench --only forms`) times the real block - batch 8 at 56x56,
minires' Numba kernels and PyTorch with twins built the same way - and writes the
verdict in words. The run stored with the repository (2 shared cores, other jobs
running: the min-max spread of each row shows how noisy it was):
"""),
    code("""
bench = json.loads((RESULTS / "bench-forms.json").read_text())
from minires.benchmarks.report import forms_table, forms_verdict
print("\\n".join(forms_table(bench)))
print()
print(forms_verdict(bench))     # the words are computed from the rows above
"""),
    md("""
## Table 1 and the templates: the same budget, counted

`mr.summary` counts parameters and multiply-adds from the shapes (no compute). ResNeXt-50
32x4d against ResNet-50 (Table 1), then the five preserved-complexity templates of Table
3: cardinality up, width per path down, the block's cost about constant.
"""),
    code("""
print(f"{'model':<22} {'3x3 width (conv2)':>18} {'params':>10} {'mult-adds':>10}")
counts = {}
for name in models.RESNEXT_TEMPLATES:
    with models.no_init():
        m = models.resnext50_template(name)
    s = mr.summary(m, (3, 224, 224))
    counts[name] = (s.total_params, s.total_macs)
    label = "ResNet-50 (1x64d)" if name == "1x64d" else f"ResNeXt-50 {name}"
    print(f"{label:<22} {m.layer1[0].conv2.out_channels:>18} {s.total_params / 1e6:>9.2f}M "
          f"{s.total_macs / 1e9:>9.2f}G")
params = [p for p, _ in counts.values()]; macs = [m for _, m in counts.values()]
assert abs(counts["1x64d"][0] - 25_557_032) == 0 and abs(counts["32x4d"][0] - 25_028_904) == 0
assert max(params) / min(params) < 1.03 and max(macs) / min(macs) < 1.06
"""),
    md("""
## Dense, grouped, depthwise-separable: one layer, one budget

Three ways to spend the FLOPs of ResNet-50's 3x3 conv (64 -> 64 at 56x56, 36,864
multiply-adds per pixel): the dense conv itself; a grouped conv 256 -> 256 in 16 groups
(exactly the same FLOPs, 4x the channels); a depthwise-separable conv of 188 channels
(depthwise 3x3 + pointwise 1x1: 9*188 + 188^2 = 37,036, +0.5%). Same work, very different
arithmetic intensity (FLOP per compulsory byte), hence different speed. `DepthwiseSeparableBlock`
is that conv as a residual block (depthwise 3x3 - BN - ReLU - pointwise 1x1 - BN, + shortcut,
ReLU).
"""),
    code("""
from minires.benchmarks.specs import layer_sweep
specs = {s.kind: s for s in layer_sweep(batch=8, size=56) if s.kind in ("grouped", "separable")}
specs["dense"] = next(s for s in layer_sweep(8, 56) if s.name.startswith("conv2 dense"))
print(f"{'layer':<30} {'weights':>8} {'MACs per output pixel':>22} {'FLOP/byte':>10}")
for kind in ("dense", "grouped", "separable"):
    s = specs[kind]
    weights = sum(int(np.prod(p.w_shape)) for p in s.parts())
    macs_px = s.flops // (2 * s.batch * s.out * s.out)
    print(f"{s.name:<30} {weights:>8,} {macs_px:>22,} {s.intensity:>10.1f}")
assert specs["grouped"].flops == specs["dense"].flops
assert abs(specs["separable"].flops / specs["dense"].flops - 1) < 0.01

blk = models.DepthwiseSeparableBlock(188, 188)
assert blk.conv1.weight.shape == (188, 1, 3, 3) and blk.conv2.weight.shape == (188, 188, 1, 1)
"""),
    md("""
Measured by `minires bench` (forward + both backward passes, batch 8, 56x56; stored run):
"""),
    code("""
layers = json.loads((RESULTS / "bench-layers.json").read_text())
rows = {(r["name"], r["backend"]): r for r in layers["rows"] if r["section"] == "layer"}
names = [specs[k].name for k in ("dense", "grouped", "separable")]
print(f"{'layer':<30} {'FLOP/B':>6} " + " ".join(f"{b + ' ms':>12}" for b in ("numba", "torch", "torch_cl")))
for n in names:
    cells = []
    for b in ("numba", "torch", "torch_cl"):
        r = rows.get((n, b), {})
        cells.append(f"{r['total_median_ms']:>12.1f}" if r.get("status") == "ok" else f"{'-':>12}")
    print(f"{n:<30} {rows[(n, 'numba')]['intensity_flop_per_byte']:>6.1f} " + " ".join(cells))
"""),
    md("""
## The cardinality ablation at small scale

`minires experiment cardinality` trains the five templates as CIFAR-style ResNeXts of
depth 11 (one bottleneck per stage, every width of ResNeXt-50 halved: 3x3 widths
32/40/48/56/64 at stage 1) on the embedded 8x8 digits, 3 seeds each, and says whether any
trend is larger than the seed-to-seed spread. The stored run:
"""),
    code("""
card = json.loads((RESULTS / "cardinality.json").read_text())
print(f"{'template':<8} {'params':>8} {'mult-adds':>10}  test error % per seed      mean +- s.d.")
for t, v in card["templates"].items():
    errs = " ".join(f"{100 * e:5.2f}" for e in v["errors"].values())
    print(f"{t:<8} {v['params']:>8,} {v['mult_adds']:>10,}  {errs:<26} {100 * v['mean_error']:.2f} +- {100 * v['std_error']:.2f}")
print()
print(card["findings"]["summary"])
from minires.experiments import cardinality_findings, plot_cardinality
again = cardinality_findings(card["templates"])   # the verdict follows from the numbers
assert again["trend_larger_than_seed_spread"] == card["findings"]["trend_larger_than_seed_spread"]
plot_cardinality(card);
"""),
    md("""
## The graphs of form (c) and form (a)

A small block (16 -> 8 in 4 groups of 2 -> 16), drawn with `mr.viz.plot` (parameters
hidden): form (c) is one straight residual path; form (a) splits into 4 paths that are
summed before the last BN - split, transform, merge, with the identity path (blue)
around it all.
"""),
    code("""
mr.manual_seed(0)
small_c = Bottleneck(16, 4, groups=4, base_width=32)
small_a = ResNeXtPaths.from_bottleneck(small_c)
xs_ = mr.tensor(np.random.default_rng(0).standard_normal((2, 16, 4, 4)).astype(np.float32),
                requires_grad=True)
fig, axes = plt.subplots(1, 2, figsize=(13, 7), gridspec_kw={"width_ratios": [1, 2.2]})
for ax, blk, title in ((axes[0], small_c, "form (c): one grouped conv"),
                       (axes[1], small_a, "form (a): 4 paths, summed")):
    with mr.viz.trace(blk):
        out = blk(xs_)
    mr.viz.plot(out, color_paths=True, show_params=False, ax=ax, fontsize=6)
    ax.set_title(title)
    n_ops = len(list(mr.autograd.iter_graph(out)))
    print(f"{title}: {n_ops} ops")
plt.tight_layout()
"""),
]


NOTEBOOKS = {
    "01": ("01_autograd_from_scratch.ipynb", NB01),
    "02": ("02_residual_gradients.ipynb", NB02 + NB02_GRAPH),
    "03": ("03_convolutions.ipynb", NB03),
    "04": ("04_degradation.ipynb", NB04),
    "05": ("05_lesion_and_paths.ipynb", NB05),
    "06": ("06_split_transform_merge.ipynb", NB06),
}


def build(key: str) -> Path:
    name, cells = NOTEBOOKS[key]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    path = HERE / name
    nbformat.write(nb, path)
    return path


def execute(path: Path, timeout: int = 600) -> float:
    from nbclient import NotebookClient

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: one thread is fastest
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    nb = nbformat.read(path, as_version=4)
    t = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()  # fmt: skip
    for cell in nb.cells:  # keep the stored notebooks stable: no execution timestamps
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    return time.time() - t


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    keys = args or list(NOTEBOOKS)
    for key in keys:
        p = build(key)
        if "--no-exec" not in sys.argv:
            print(f"{p.name}: executed in {execute(p):.1f}s", flush=True)
        else:
            print(f"{p.name}: written")
