"""Golden files for neural-network bound propagation (IBP and CROWN).

An independent float64 implementation of
  * IBP   -- interval bound propagation (Gowal et al. 2018, "On the
             Effectiveness of Interval Bound Propagation"), and
  * CROWN -- linear back-substitution with ReLU / LeakyReLU relaxations
             (Zhang et al. 2018, "Efficient Neural Network Robustness
             Certification with General Activation Functions"),
written from the papers with numpy only (onnx is used to write the model
files, onnxruntime, if installed, to cross-check them).

Run from the repository root:

    python tests/golden/bounds/make_bounds.py            # regenerate goldens
    python tests/golden/bounds/make_bounds.py --bench [--n 1000] [--eps 0.1] [--out f.json]

Needs numpy and onnx.  Everything is deterministic (fixed numpy seeds).  For
each network NAME it writes NAME.onnx and NAME.json next to this script, after
asserting (a) soundness against sampled / attacked points of the perturbation
set, (b) CROWN margins >= IBP margins, (c) onnxruntime == float64 forward.

Conventions (the Rust side implements the same ones):
  * pixels live in [0, 1]; the perturbation set S is the L-inf or L2 ball
    around x intersected with [0, 1]^d; B = [max(0, x-eps), min(1, x+eps)] is
    its box hull (also for L2).
  * IBP: affine maps via centre/radius (c' = A c + b, r' = |A| r), monotone
    activations on (l, u), MaxPool on l and on u, Add of two tensors adds
    bounds, Flatten just reshapes the bounds.
  * CROWN: activation nodes are refined in topological order; for the
    unstable neurons (l < 0 < u) of the activation's input, lower bounds of
    z_i and -z_i are obtained by back-substitution to the input and
    intersected with the interval; interval propagation then continues from
    the refined bounds.  The final margin is max(CROWN(e_y - e_j), l_y - u_j).
  * float32 ONNX attributes (BatchNormalization epsilon, LeakyRelu alpha) are
    used as their float32 values widened to float64.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

# Single-threaded BLAS: the matmuls here are small and batched, and OpenBLAS threads only
# contend (badly, on a loaded machine).  Override by setting the variable yourself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
ACTIVATIONS = ("relu", "leaky")


def f64(a):
    """float32 value(s) widened exactly to float64."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ----------------------------------------------------------------------------
# Network description: a list of nodes in topological order.  Each node keeps
# its float64 parameters for computing and an "onnx" triple
# (op_type, [(suffix, float32 initializer)], attributes) for export.
# Computational ops: ew (elementwise y = s*x + t), conv, gemm (y = x W^T + b),
# avgpool, gap, flatten, add (two data tensors), relu, leaky, maxpool.
# ----------------------------------------------------------------------------
class Net:
    def __init__(self, name, input_shape, classes):
        self.name, self.input_shape, self.classes = name, tuple(input_shape), classes
        self.nodes, self.last = [], "input"

    def add(self, op, onnx_, inp=None, **params):
        name = "n%d_%s" % (len(self.nodes), op)
        self.nodes.append(dict(name=name, op=op, inp=inp or [self.last], onnx=onnx_, **params))
        self.last = name
        return name

    def finish(self):
        self.nodes[-1]["name"] = "logits"
        self.shapes = {"input": self.input_shape}  # per-sample shapes
        forward(self, np.zeros((1,) + self.input_shape), self.shapes)
        return self

    # --- layer helpers (weights are float32, computing copies float64) ---
    def sub(self, c):
        return self.add("ew", ("Sub", [("c", c)], {}), s=np.ones_like(f64(c)), t=-f64(c))

    def div(self, c):
        return self.add("ew", ("Div", [("c", c)], {}), s=1.0 / f64(c), t=np.zeros_like(f64(c)))

    def addc(self, c):
        return self.add("ew", ("Add", [("c", c)], {}), s=np.ones_like(f64(c)), t=f64(c))

    def bn(self, gamma, beta, mean, var, eps=1e-5):
        s = f64(gamma) / np.sqrt(f64(var) + f64(eps))
        t = f64(beta) - f64(mean) * s
        inits = [("scale", gamma), ("B", beta), ("mean", mean), ("var", var)]
        return self.add("ew", ("BatchNormalization", inits, dict(epsilon=eps)),
                        s=s.reshape(1, -1, 1, 1), t=t.reshape(1, -1, 1, 1))

    def conv(self, W, b=None, stride=1, pad=0):
        inits = [("W", W)] + ([("b", b)] if b is not None else [])
        attrs = dict(kernel_shape=list(W.shape[2:]), strides=[stride] * 2, pads=[pad] * 4)
        return self.add("conv", ("Conv", inits, attrs), W=f64(W),
                        b=None if b is None else f64(b), stride=stride, pad=pad)

    def gemm(self, W, b):  # ONNX Gemm with transB = 1: y = x W^T + b
        return self.add("gemm", ("Gemm", [("W", W), ("b", b)], dict(transB=1)), W=f64(W), b=f64(b))

    def matmul(self, Bm):  # ONNX MatMul with a constant: y = x B
        return self.add("gemm", ("MatMul", [("B", Bm)], {}), W=f64(Bm).T.copy(), b=None)

    def relu(self):
        return self.add("relu", ("Relu", [], {}))

    def leaky(self, alpha):
        return self.add("leaky", ("LeakyRelu", [], dict(alpha=alpha)), alpha=float(f64(alpha)))

    def maxpool(self, k, s):
        return self.add("maxpool", ("MaxPool", [], dict(kernel_shape=[k, k], strides=[s, s])), k=k, s=s)

    def avgpool(self, k, s):
        return self.add("avgpool", ("AveragePool", [], dict(kernel_shape=[k, k], strides=[s, s])), k=k, s=s)

    def gap(self):
        return self.add("gap", ("GlobalAveragePool", [], {}))

    def flatten(self):
        return self.add("flatten", ("Flatten", [], dict(axis=1)))

    def add2(self, a, b):
        return self.add("add", ("Add", [], {}), inp=[a, b])


# ----------------------------------------------------------------------------
# Linear building blocks (vectorised over a leading batch / row axis)
# ----------------------------------------------------------------------------
def windows(x, kh, kw, s):
    """View (P, C, Ho, Wo, kh, kw) of the pooling / convolution windows of x."""
    P, C, H, W = x.shape
    Ho, Wo = (H - kh) // s + 1, (W - kw) // s + 1
    sp, sc, sh, sw = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (P, C, Ho, Wo, kh, kw), (sp, sc, sh * s, sw * s, sh, sw), writeable=False)


def conv2d(x, W, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = windows(xp, W.shape[2], W.shape[3], s)  # (P, Ci, Ho, Wo, kh, kw)
    return np.tensordot(win, W, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def conv2d_T(g, W, s, p, hw):
    """Adjoint of conv2d (a transposed convolution): (R, Co, Ho, Wo) -> (R, Ci, H, W)."""
    R, Co, Ho, Wo = g.shape
    Ci, kh, kw = W.shape[1:]
    # cols[r, (ci, a, b), (h, w)] = sum_o W[o, ci, a, b] g[r, o, h, w]  (one batched matmul)
    cols = np.matmul(W.reshape(Co, -1).T, g.reshape(R, Co, Ho * Wo)).reshape(R, Ci, kh, kw, Ho, Wo)
    out = np.zeros((R, Ci, hw[0] + 2 * p, hw[1] + 2 * p))
    for a in range(kh):
        for b in range(kw):
            out[:, :, a:a + s * (Ho - 1) + 1:s, b:b + s * (Wo - 1) + 1:s] += cols[:, :, a, b]
    return out[:, :, p:p + hw[0], p:p + hw[1]]


def window_scatter(g, k, s, hw, select=None):
    """Adjoint of reading k x k windows: adds g (or g masked per window slot) back to (H, W)."""
    R, C, Ho, Wo = g.shape
    out = np.zeros((R, C) + tuple(hw))
    for a in range(k):
        for b in range(k):
            v = g if select is None else np.where(select == a * k + b, g, 0.0)
            out[:, :, a:a + s * (Ho - 1) + 1:s, b:b + s * (Wo - 1) + 1:s] += v
    return out


def lin(n, x, absw=False, bias=True):
    """Affine node applied to x (with |weights| and/or without bias for IBP radii)."""
    op = n["op"]
    if op == "ew":
        y = x * (np.abs(n["s"]) if absw else n["s"])
        return y + n["t"] if bias else y
    if op == "conv":
        y = conv2d(x, np.abs(n["W"]) if absw else n["W"], n["stride"], n["pad"])
        return y + n["b"][None, :, None, None] if bias and n["b"] is not None else y
    if op == "gemm":
        y = x @ (np.abs(n["W"]) if absw else n["W"]).T
        return y + n["b"] if bias and n["b"] is not None else y
    if op == "avgpool":
        return windows(x, n["k"], n["k"], n["s"]).mean(axis=(4, 5))
    if op == "gap":
        return x.mean(axis=(2, 3), keepdims=True)
    if op == "flatten":
        return x.reshape(len(x), -1)
    raise ValueError(op)


def lin_T(n, g, in_shape):
    """Back-substitution through an affine node: returns (Lambda_in, constant per row)."""
    op, R = n["op"], len(g)
    zero = np.zeros(R)
    if op == "ew":
        return g * n["s"], (g * n["t"]).reshape(R, -1).sum(1)
    if op == "conv":
        c = zero if n["b"] is None else np.einsum("rohw,o->r", g, n["b"])
        return conv2d_T(g, n["W"], n["stride"], n["pad"], in_shape[1:]), c
    if op == "gemm":
        return g @ n["W"], zero if n["b"] is None else g @ n["b"]
    if op == "avgpool":
        return window_scatter(g / n["k"] ** 2, n["k"], n["s"], in_shape[1:]), zero
    if op == "gap":
        return np.broadcast_to(g / (in_shape[1] * in_shape[2]), (R,) + tuple(in_shape)).copy(), zero
    if op == "flatten":
        return g.reshape((R,) + tuple(in_shape)), zero
    raise ValueError(op)


def forward(net, x, shapes=None):
    """Plain float64 forward pass; x is (P, C, H, W).  Returns the logits."""
    v = {"input": x}
    for n in net.nodes:
        a = v[n["inp"][0]]
        if n["op"] == "relu":
            y = np.maximum(a, 0.0)
        elif n["op"] == "leaky":
            y = np.where(a >= 0, a, n["alpha"] * a)
        elif n["op"] == "maxpool":
            y = windows(a, n["k"], n["k"], n["s"]).max(axis=(4, 5))
        elif n["op"] == "add":
            y = a + v[n["inp"][1]]
        else:
            y = lin(n, a)
        v[n["name"]] = y
        if shapes is not None:
            shapes[n["name"]] = y.shape[1:]
    return v["logits"]


# ----------------------------------------------------------------------------
# Interval propagation (IBP); with `refine` it becomes the CROWN interval pass
# ----------------------------------------------------------------------------
def interval_pass(net, lB, uB, refine=None):
    pre = {n["inp"][0] for n in net.nodes if n["op"] in ACTIVATIONS}
    bnd = {"input": (lB, uB)}
    for n in net.nodes:
        l, u = bnd[n["inp"][0]]
        op = n["op"]
        if op == "relu":
            l, u = np.maximum(l, 0.0), np.maximum(u, 0.0)
        elif op == "leaky":
            a = n["alpha"]
            l, u = np.where(l >= 0, l, a * l), np.where(u >= 0, u, a * u)
        elif op == "maxpool":
            l, u = (windows(t, n["k"], n["k"], n["s"]).max(axis=(4, 5)) for t in (l, u))
        elif op == "add":
            l2, u2 = bnd[n["inp"][1]]
            l, u = l + l2, u + u2
        elif op == "flatten":
            l, u = lin(n, l), lin(n, u)
        else:  # affine: centre / radius
            c, r = (l + u) / 2, (u - l) / 2
            c, r = lin(n, c), lin(n, r, absw=True, bias=False)
            l, u = c - r, c + r
        bnd[n["name"]] = (l, u)
        if refine is not None and n["name"] in pre:
            bnd[n["name"]] = refine(n["name"], l, u, bnd)
    return bnd


def input_box(x, eps):
    return np.maximum(0.0, x - eps), np.minimum(1.0, x + eps)


def ibp(net, x, eps, labels):
    lB, uB = input_box(x, eps)
    l, u = interval_pass(net, lB, uB)["logits"]
    m = l[np.arange(len(x)), labels][:, None] - u
    m[np.arange(len(x)), labels] = np.nan
    return m, l, u


# ----------------------------------------------------------------------------
# CROWN
# ----------------------------------------------------------------------------
def relaxation(n, l, u):
    """Linear bounds al*z + bl <= act(z) <= au*z + bu for an activation with input in [l, u]."""
    a = n["alpha"] if n["op"] == "leaky" else 0.0
    act, dead = l >= 0, u <= 0
    unst = ~act & ~dead
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(unst, (u - a * l) / (u - l), 0.0)  # chord slope (ReLU: u / (u - l))
    au = np.where(act, 1.0, np.where(dead, a, s))
    bu = np.where(unst, a * l - s * l, 0.0)
    al = np.where(act, 1.0, np.where(dead, a, np.where(u >= -l, 1.0, a)))
    return al, np.zeros_like(l), au, bu


def maxpool_relaxation(n, l, u):
    """Per window: j* = argmax l (first in row-major order), stability flag and max u."""
    k, s = n["k"], n["s"]
    wl = windows(l, k, k, s).reshape(l.shape[:2] + (-1, k * k))
    wu = windows(u, k, k, s).reshape(u.shape[:2] + (-1, k * k))
    js = wl.argmax(-1)
    lj = np.take_along_axis(wl, js[..., None], -1)[..., 0]
    others = wu.copy()
    np.put_along_axis(others, js[..., None], -np.inf, -1)
    stable = lj >= others.max(-1)
    Ho, Wo = (l.shape[2] - k) // s + 1, (l.shape[3] - k) // s + 1
    sh = l.shape[:2] + (Ho, Wo)
    return js.reshape(sh), stable.reshape(sh), wu.max(-1).reshape(sh)


class Crown:
    def __init__(self, net, x, eps, norm, chunk=512):
        self.net, self.x, self.eps, self.norm, self.chunk = net, x, eps, norm, chunk
        self.lB, self.uB = input_box(x, eps)
        self.relax = {}  # per activation / maxpool node, computed once its input bounds are final

    def lower(self, bnd, target, g, rs):
        """Lower bound over S of sum(g * target) for each row; row r belongs to sample rs[r]."""
        net, R = self.net, len(g)
        lam, const = {target: g}, np.zeros(R)
        idx = [n["name"] for n in net.nodes].index(target)
        for n in reversed(net.nodes[:idx + 1]):
            if n["name"] not in lam:
                continue
            g = lam.pop(n["name"])
            op, inp = n["op"], n["inp"][0]
            if op in ACTIVATIONS or op == "maxpool":
                if n["name"] not in self.relax:
                    fn = maxpool_relaxation if op == "maxpool" else relaxation
                    self.relax[n["name"]] = fn(n, *bnd[inp])
                # gather the sample's relaxation per row (broadcast when a chunk has one sample)
                sel = rs[:1] if np.all(rs == rs[0]) else rs
                rel = [t[sel] for t in self.relax[n["name"]]]
            if op in ACTIVATIONS:  # lambda >= 0 -> lower relaxation, < 0 -> upper
                al, bl, au, bu = rel
                pos = g >= 0
                gi = np.where(pos, g * al, g * au)
                const += np.where(pos, g * bl, g * bu).reshape(R, -1).sum(1)
                outs = [(inp, gi)]
            elif op == "maxpool":
                js, stable, maxu = rel
                take = (g >= 0) | stable  # y >= x_{j*} always; y <= x_{j*} only when stable
                const += np.where(take, 0.0, g * maxu).reshape(R, -1).sum(1)
                gi = window_scatter(np.where(take, g, 0.0), n["k"], n["s"],
                                    net.shapes[inp][1:], select=js)
                outs = [(inp, gi)]
            elif op == "add":
                outs = [(inp, g), (n["inp"][1], g)]
            else:
                gi, c = lin_T(n, g, net.shapes[inp])
                const += c
                outs = [(inp, gi)]
            for name, gi in outs:
                lam[name] = lam[name] + gi if name in lam else gi
        g = lam["input"].reshape(R, -1)
        lo, up = self.lB.reshape(len(self.x), -1)[rs], self.uB.reshape(len(self.x), -1)[rs]
        best = const + np.minimum(g * lo, g * up).sum(1)  # box concretization over B
        if self.norm == "l2":
            xs = self.x.reshape(len(self.x), -1)[rs]
            best = np.maximum(best, const + (g * xs).sum(1) - self.eps * np.linalg.norm(g, axis=1))
        return best

    def lower_rows(self, bnd, target, rows, rs):
        """Lower bounds of rows sum_k sign_k * target[col_k[r]] for sample rs[r] (rows built per chunk)."""
        cols, signs = rows
        D = int(np.prod(self.net.shapes[target]))
        out = np.empty(len(rs))
        # chunks of at most self.chunk rows, never mixing samples (rows are sorted by sample)
        order = np.argsort(rs, kind="stable")
        bounds = np.searchsorted(rs[order], np.unique(rs)).tolist() + [len(rs)]
        starts = [s for b0, b1 in zip(bounds, bounds[1:]) for s in range(b0, b1, self.chunk)]
        for s, e in zip(starts, starts[1:] + [len(rs)]):
            sl = order[s:e]
            g = np.zeros((len(rs[sl]), D))
            for c, sg in zip(cols, signs):  # each spec row is a sum of signed unit vectors
                g[np.arange(len(g)), c[sl]] += sg[sl] if np.ndim(sg) else sg
            out[sl] = self.lower(bnd, target, g.reshape((-1,) + tuple(self.net.shapes[target])), rs[sl])
        return out

    def refine(self, name, l, u, bnd):
        B = len(l)
        lf, uf = l.reshape(B, -1).copy(), u.reshape(B, -1).copy()
        bi, ii = np.nonzero((lf < 0) & (uf > 0))
        n = len(bi)
        if n:
            rs = np.concatenate([bi, bi])
            sg = np.concatenate([np.ones(n), -np.ones(n)])
            lb = self.lower_rows(bnd, name, ([np.concatenate([ii, ii])], [sg]), rs)
            lf[bi, ii] = np.maximum(lf[bi, ii], lb[:n])
            uf[bi, ii] = np.minimum(uf[bi, ii], -lb[n:])
        return lf.reshape(l.shape), uf.reshape(u.shape)

    def margins(self, labels):
        bnd = interval_pass(self.net, self.lB, self.uB, refine=self.refine)
        l, u = bnd["logits"]
        B, K = l.shape
        bi, jj = np.nonzero(np.arange(K)[None, :] != labels[:, None])
        yy = labels[bi]
        lb = self.lower_rows(bnd, "logits", ([yy, jj], [1.0, -1.0]), bi)
        m = np.full((B, K), np.nan)
        m[bi, jj] = np.maximum(lb, l[bi, yy] - u[bi, jj])
        return m, l, u


def crown(net, x, eps, norm, labels, chunk=512):
    return Crown(net, x, eps, norm, chunk).margins(labels)


# ----------------------------------------------------------------------------
# Test networks (random, deterministic)
# ----------------------------------------------------------------------------
def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def bias(rng, n):
    return (rng.standard_normal(n) * 0.1).astype(np.float32)


def make_nets():
    nets = []
    r = np.random.default_rng(1001)
    m = Net("mlp", (1, 4, 4), 5)
    m.sub(np.full((1, 1, 1, 1), 0.3, np.float32)); m.div(np.full((1, 1, 1, 1), 0.5, np.float32))
    m.flatten()
    m.gemm(he(r, (20, 16), 16), bias(r, 20)); m.relu()
    m.gemm(he(r, (12, 20), 20), bias(r, 12)); m.relu()
    m.gemm(he(r, (5, 12), 12), bias(r, 5))
    nets.append(m.finish())

    r = np.random.default_rng(1002)
    c = Net("cnn", (2, 6, 6), 4)
    c.conv(he(r, (4, 2, 3, 3), 18), None, 1, 1)  # no bias (followed by BatchNormalization)
    f32 = lambda a: np.asarray(a, np.float32)
    c.bn(f32(r.uniform(0.5, 1.5, 4)), bias(r, 4), bias(r, 4), f32(r.uniform(0.5, 1.5, 4)))
    c.relu()
    c.conv(he(r, (6, 4, 3, 3), 36), bias(r, 6), 2, 1); c.relu()
    c.gap(); c.flatten()
    c.gemm(he(r, (4, 6), 6), bias(r, 4))
    nets.append(c.finish())

    r = np.random.default_rng(1003)
    p = Net("cnn_maxpool", (1, 8, 8), 3)
    p.conv(he(r, (3, 1, 3, 3), 9), bias(r, 3), 1, 1); p.relu(); p.maxpool(2, 2)
    p.conv(he(r, (4, 3, 3, 3), 27), bias(r, 4), 1, 0); p.leaky(0.1)
    p.flatten()
    p.matmul(he(r, (16, 6), 16)); p.addc(bias(r, 6)); p.relu()
    p.gemm(he(r, (3, 6), 6), bias(r, 3))
    nets.append(p.finish())

    r = np.random.default_rng(1004)
    s = Net("residual", (1, 6, 6), 3)
    s.conv(he(r, (4, 1, 3, 3), 9), bias(r, 4), 1, 1)
    a = s.relu()
    h = s.conv(he(r, (4, 4, 3, 3), 36), bias(r, 4), 1, 1)
    s.add2(h, a); s.relu(); s.avgpool(2, 2); s.flatten()
    s.gemm(he(r, (3, 36), 36), bias(r, 3))
    nets.append(s.finish())
    return nets


def write_onnx(net, path):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    nodes, inits = [], []
    for n in net.nodes:
        op_type, cinits, attrs = n["onnx"]
        names = []
        for suffix, arr in cinits:
            names.append("%s_%s" % (n["name"], suffix))
            inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), names[-1]))
        nodes.append(helper.make_node(op_type, list(n["inp"]) + names, [n["name"]], name=n["name"], **attrs))
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(net.input_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", net.classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


# ----------------------------------------------------------------------------
# Self-checks: points of S (random, box corners, PGD with numerical gradients)
# ----------------------------------------------------------------------------
def project(p, x, eps, norm):
    if norm == "linf":
        return np.clip(p, np.maximum(0, x - eps), np.minimum(1, x + eps))
    d = (p - x).reshape(len(p), -1)
    nr = np.linalg.norm(d, axis=1, keepdims=True)
    d = d * np.minimum(1.0, eps / np.maximum(nr, 1e-300))
    return np.clip(x + d.reshape(p.shape), 0.0, 1.0)  # clipping towards x keeps the L2 norm


def points_in_S(net, x, y, eps, norm, rng, n=2000, steps=15):
    d = x.size
    if norm == "linf":
        lo, hi = input_box(x, eps)
        pts = [rng.uniform(lo, hi, (n,) + x.shape), np.where(rng.random((200,) + x.shape) < 0.5, lo, hi)]
    else:
        v = rng.standard_normal((n, d))
        v *= (eps * rng.random((n, 1)) ** (1.0 / d)) / np.linalg.norm(v, axis=1, keepdims=True)
        pts = [np.clip(x + v.reshape((n,) + x.shape), 0, 1)]
    # PGD on z_y - z_j for every j != y, gradient by central differences
    K, h = net.classes, 1e-6
    js = [j for j in range(K) if j != y]
    p = np.repeat(x[None], len(js), 0)
    E = np.eye(d).reshape((d,) + x.shape) * h
    for t in range(steps):
        q = np.concatenate([p[:, None] + E[None], p[:, None] - E[None]], 1).reshape((-1,) + x.shape)
        z = forward(net, q).reshape(len(js), 2, d, K)
        mg = z[..., y] - np.take_along_axis(z, np.array(js)[:, None, None, None], -1)[..., 0]
        g = ((mg[:, 0] - mg[:, 1]) / (2 * h)).reshape(p.shape)
        step = eps if t == 0 else eps * 0.25 / (1 + t // 5)  # first step: the sign-gradient point
        if norm == "l2":
            g = g / np.maximum(np.linalg.norm(g.reshape(len(js), -1), axis=1), 1e-300)[:, None, None, None]
        p = project(p - step * (np.sign(g) if norm == "linf" else g), x, eps, norm)
        pts.append(p)
    pts = np.concatenate(pts)
    dist = np.abs(pts - x).reshape(len(pts), -1)
    dist = dist.max(1) if norm == "linf" else np.linalg.norm(dist, axis=1)
    keep = (dist <= eps * (1 + 1e-12)) & (pts >= 0).reshape(len(pts), -1).all(1) & \
           (pts <= 1).reshape(len(pts), -1).all(1)
    return pts[keep]


CASES = [("linf", 0.01), ("linf", 0.05), ("linf", 0.15), ("l2", 0.1), ("l2", 0.5)]


def make_images(net, rng):
    X = rng.random((6,) + net.input_shape, dtype=np.float32)
    for i in (4, 5):  # many pixels at / near 0 or 1 so that clipping matters
        m = rng.random(net.input_shape) < 0.6
        edge = np.where(rng.random(net.input_shape) < 0.5, 0.0, 1.0)
        near = np.abs(edge - rng.random(net.input_shape) * 0.02 * (rng.random(net.input_shape) < 0.5))
        X[i][m] = near[m].astype(np.float32)
    return X


def golden(net, rng):
    X32 = make_images(net, rng)
    X = f64(X32)
    clean = forward(net, X)
    pred = clean.argmax(1)
    labels = np.array([pred[i] if i % 2 == 0 else (pred[i] + 1) % net.classes for i in range(6)])
    out = dict(input_shape=list(net.input_shape), classes=net.classes,
               images=X.reshape(6, -1).tolist(), labels=labels.tolist(), clean_logits=clean.tolist(), cases=[])
    print("%s: max(bound - observed) and certified samples (of 6) per case" % net.name)
    for norm, eps in CASES:
        worst, summary = -np.inf, []
        res = {"ibp": ibp(net, X, eps, labels), "crown": crown(net, X, eps, norm, labels)}
        # (b) CROWN at least as tight as IBP
        mi, mc = res["ibp"][0], res["crown"][0]
        ok = ~np.isnan(mi)
        assert np.all(mc[ok] >= mi[ok] - 1e-9), (net.name, norm, eps)
        # (a) soundness against points of S
        for i in range(6):
            z = forward(net, points_in_S(net, X[i], labels[i], eps, norm, rng))
            obs = z[:, labels[i]][:, None] - z
            for meth, (m, l, u) in res.items():
                for j in range(net.classes):
                    if j != labels[i]:
                        worst = max(worst, m[i, j] - obs[:, j].min())
                worst = max(worst, (l[i] - z).max(), (z - u[i]).max())
        assert worst <= 1e-9, (net.name, norm, eps, worst)
        for meth, (m, l, u) in res.items():
            summary.append("%s %d" % (meth, int(np.sum(np.nanmin(m, 1) > 0))))
            out["cases"].append(dict(
                norm=norm, eps=eps, method=meth,
                margins=[[None if np.isnan(v) else float(v) for v in row] for row in m],
                logit_lower=l.tolist(), logit_upper=u.tolist()))
        print("  %-4s eps %-5g max violation %9.2e   certified: %s" % (norm, eps, worst, ", ".join(summary)))
    # (c) onnxruntime reproduces the float64 forward
    path = os.path.join(HERE, net.name + ".onnx")
    write_onnx(net, path)
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ort_out = sess.run(["logits"], {"input": X32})[0]
        err = float(np.abs(ort_out - clean).max())
        assert err < 1e-4, (net.name, err)
    except ImportError:
        err = float("nan")
        print("  (onnxruntime not installed: skipping check (c))")
    with open(os.path.join(HERE, net.name + ".json"), "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("  onnxruntime vs float64 forward: max |diff| %.2g" % err)


# ----------------------------------------------------------------------------
# --bench: the shipped MNIST CNN
# ----------------------------------------------------------------------------
def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], "<f4").reshape(v["shape"])
    return out


def load_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def bench(args):
    t = load_safetensors(os.path.join(ROOT, "models/zoo/mnist-cnn.safetensors"))
    net = Net("mnist-cnn", (1, 28, 28), 10)
    net.sub(np.full((1, 1, 1, 1), 0.1307, np.float32)); net.div(np.full((1, 1, 1, 1), 0.3081, np.float32))
    net.conv(t["conv1.weight"], t["conv1.bias"], 1, 1); net.relu(); net.maxpool(2, 2)
    net.conv(t["conv2.weight"], t["conv2.bias"], 1, 1); net.relu(); net.maxpool(2, 2)
    net.flatten()
    net.gemm(t["fc1.weight"], t["fc1.bias"]); net.relu()
    net.gemm(t["fc2.weight"], t["fc2.bias"])
    net.finish()
    d = os.path.join(ROOT, "datasets/data/mnist-test-1k")
    X = load_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))[:args.n].astype(np.float64)[:, None] / 255.0
    y = load_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))[:args.n].astype(np.int64)
    acc = float(np.mean(forward(net, X).argmax(1) == y))
    print("MNIST CNN, %d images, L-inf eps %g, clean accuracy %.4f" % (len(X), args.eps, acc))
    result = {}
    for meth in ("ibp", "crown"):
        t0, ms = time.time(), []
        bs = 100 if meth == "ibp" else args.batch
        for s in range(0, len(X), bs):
            xb, yb = X[s:s + bs], y[s:s + bs]
            m = ibp(net, xb, args.eps, yb)[0] if meth == "ibp" else crown(net, xb, args.eps, "linf", yb)[0]
            ms.append(np.nanmin(m, 1))
            if meth == "crown":
                print("  crown %d/%d images, %.1f s" % (s + len(xb), len(X), time.time() - t0), flush=True)
        mm = np.concatenate(ms)
        print("%-5s %8.2f s  certified %d / %d" % (meth, time.time() - t0, int(np.sum(mm > 0)), len(X)))
        result[meth], result[meth + "_margin"] = (mm > 0).tolist(), mm.tolist()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=10, help="images per CROWN batch")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.bench:
        return bench(args)
    for k, net in enumerate(make_nets()):
        golden(net, np.random.default_rng(2000 + k))


if __name__ == "__main__":
    sys.exit(main())
