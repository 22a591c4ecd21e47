//! Square (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
//! adversarial attack via random search", ECCV 2020): a gradient-free attack that only reads logits.
//!
//! Random search on the surface of the ε-ball. Each sample keeps its best point x̂ and the loss
//! there; every iteration proposes one change of x̂ confined to a random square window and keeps it
//! when the loss decreases (or the goal is reached). The loss is the margin
//! m = z_y − max_{j≠y} z_j (untargeted; for a targeted goal m = max_{j≠t} z_j − z_t), or with
//! `loss=ce` the negated cross-entropy (targeted: the cross-entropy towards the target); success is
//! m ≤ 0, and a sample is no longer queried once it succeeds.
//!
//! * L∞: the start is x + ε·σ with one random sign σ per channel and image column (vertical
//!   stripes); a proposal sets a random s×s window of every channel c to clamp(x + ε·σ_c), with new
//!   random signs σ_c, so that all points stay vertices of the ε-cube.
//! * L2: the start is a 5×5 grid of "meta pseudo-Gaussian" bumps (two pyramids of opposite sign,
//!   randomly transposed) with random signs per channel, scaled to ‖δ‖₂ = ε. A proposal moves the
//!   mass of a second random window into the first one, adds a new bump there and rescales the
//!   whole perturbation back to ‖δ‖₂ = ε.
//!
//! The window side is s = round(√(p·H·W)) (L∞: at least 1; L2: at least 3 and odd; at most
//! min(H, W)), where the fraction p starts at `p_init` and is halved at iterations 10, 50, 200, 500,
//! 1000, 2000, 4000, 6000 and 8000 of a 10,000-query run (the schedule is rescaled to `queries`).
//!
//! The algorithm follows the authors' code (max-andr/square-attack; the same algorithm is in
//! fra31/auto-attack and torchattacks), with these differences:
//! * every sample draws its own windows, signs and bump orientations from its own random stream
//!   (as in the authors' original L∞ code; auto-attack and torchattacks share one window per
//!   iteration across the batch), so results do not depend on batch composition;
//! * L∞: like the authors' original code (and unlike auto-attack and torchattacks), the signs of a
//!   window are redrawn until the proposal differs from x̂, so that no query is wasted. On the
//!   shipped MNIST model (300 images, 300 queries, ε = 0.2) this lowers the robust accuracy from
//!   33% (as torchattacks) to 23%;
//! * L2 start: the bumps of side ⌊H/5⌋ are tiled and centred along each axis separately (the
//!   reference assumes square images), so non-square and small images work;
//! * every point is made exactly admissible (within ε and the bounds in f32) before it is queried;
//! * for a targeted goal, `loss=margin` is the targeted margin, as in torchattacks (auto-attack
//!   always uses the cross-entropy there: `loss=ce`).
//!
//! As in the reference, a window's corner is drawn from [0, H − s) × [0, W − s): windows never
//! reach the last row and column, whose pixels keep their starting values (L∞: the stripes; L2:
//! no perturbation). Drawing from [0, H − s] instead made L2 Square weaker on MNIST, whose borders
//! are blank (robust accuracy 26.0% instead of 24.6% at ε = 3, 300 queries, mean of 8 seeds).
//!
//! Cost: one forward pass per still-unbroken sample for the start and for each of the `queries`
//! iterations, per restart. Restarts run one after the other, each on the samples still unbroken,
//! with a fresh random stream; an unbroken sample returns its point of smallest margin. A row's
//! `steps` is the number of queries spent on its sample up to and including the one that produced
//! its result.
//!
//! Parameters and defaults (those of auto-attack and torchattacks): `queries=5000` (iterations
//! after the starting point, per restart), `p_init=0.8` (in (0, 1]), `restarts=1`, `loss=margin`
//! (or `ce`).

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{Classifier, Loss};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::attack::{Attack, AttackBatch, AttackKind, AttackOutput, Cost};
use crate::params::{self, Declared, Fields, Params};
use crate::rows::Found;
use crate::threat::{Norm, ThreatModel};
use crate::{AttackError, Result};

/// How often the signs of an L∞ window are redrawn, at most, to make the proposal differ from x̂.
const MAX_REDRAWS: usize = 64;

#[derive(Debug, Clone)]
pub struct Square {
    /// Iterations (queries after the starting point) per restart.
    pub queries: usize,
    /// The initial fraction of pixels a window covers.
    pub p_init: f64,
    pub restarts: usize,
    /// `Loss::Margin` or `Loss::CrossEntropy`.
    pub loss: Loss,
}

impl Default for Square {
    fn default() -> Self {
        Square { queries: 5000, p_init: 0.8, restarts: 1, loss: Loss::Margin }
    }
}

impl Square {
    pub const NAME: &'static str = "square";

    pub fn from_params(p: Params) -> Result<Self> {
        params::parse(Self::default(), p)
    }

    /// The fraction of pixels a window covers at iteration `it` (0-based): `p_init`, halved at
    /// iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a 10,000-query run.
    pub fn p_at(&self, it: usize) -> f64 {
        // As the reference: it = int(it / n_queries * 10000).
        let it = (it as f64 / self.queries as f64 * 10000.0) as usize;
        let halvings = match it {
            0..=10 => 0,
            11..=50 => 1,
            51..=200 => 2,
            201..=500 => 3,
            501..=1000 => 4,
            1001..=2000 => 5,
            2001..=4000 => 6,
            4001..=6000 => 7,
            6001..=8000 => 8,
            _ => 9,
        };
        self.p_init / f64::from(1u32 << halvings)
    }
}

impl Declared for Square {
    fn declare(&mut self, f: &mut Fields) -> Result<()> {
        f.iterations("queries", &mut self.queries)?;
        f.number("p_init", &mut self.p_init)?;
        f.restarts(&mut self.restarts)?;
        f.loss(&mut self.loss)
    }

    fn rules(&self) -> Vec<(bool, &'static str)> {
        vec![
            (self.queries >= 1 && self.restarts >= 1, "queries and restarts must be at least 1"),
            (self.p_init > 0.0 && self.p_init <= 1.0, "p_init must lie in (0, 1]"),
            (matches!(self.loss, Loss::Margin | Loss::CrossEntropy), "loss must be margin or ce"),
        ]
    }
}

/// The side of the square window for fraction `p` of an image (C, H, W).
fn side(p: f64, [c, h, w]: [usize; 3], norm: Norm) -> usize {
    // int(round(sqrt(p * n_features / c))); Python rounds halves to even.
    let raw = (p * (c * h * w) as f64 / c as f64).sqrt().round_ties_even() as usize;
    let s = match norm {
        Norm::Linf => raw.max(1),
        Norm::L2 => {
            let s = raw.max(3);
            s + (1 - s % 2)
        }
    };
    s.min(h.min(w))
}

/// One pyramid of the L2 bumps: concentric rectangles around the centre of an x×y patch, the k-th
/// (from the centre) weighted 1/(k+1)², unit L2 norm.
fn pyramid(x: usize, y: usize) -> Vec<f64> {
    let mut d = vec![0f64; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc as isize - 1, yc as isize - 1);
    for k in 0..xc.max(yc) {
        let span = 2 * k as isize + 1;
        let (r0, r1) = (c0.max(0) as usize, (c0 + span).min(x as isize).max(0) as usize);
        let (q0, q1) = (c1.max(0) as usize, (c1 + span).min(y as isize).max(0) as usize);
        let v = 1.0 / ((k + 1) * (k + 1)) as f64;
        for i in r0..r1 {
            for j in q0..q1 {
                d[i * y + j] += v;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    normalize(&mut d);
    d
}

fn normalize(d: &mut [f64]) {
    let n = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    if n > 0.0 {
        d.iter_mut().for_each(|v| *v /= n);
    }
}

/// The "meta pseudo-Gaussian" bump of side s (row-major, unit L2 norm) and its transpose: a
/// pyramid on the top ⌊s/2⌋ rows, a negated one on the others.
struct Bump {
    up: Vec<f64>,
    transposed: Vec<f64>,
}

impl Bump {
    fn new(s: usize) -> Self {
        let mut up = pyramid(s / 2, s);
        up.extend(pyramid(s - s / 2, s).into_iter().map(|v| -v));
        normalize(&mut up);
        let transposed = (0..s * s).map(|k| up[(k % s) * s + k / s]).collect();
        Bump { up, transposed }
    }

    fn side(&self) -> usize {
        (self.up.len() as f64).sqrt().round() as usize
    }

    fn pattern(&self, transpose: bool) -> &[f64] {
        if transpose {
            &self.transposed
        } else {
            &self.up
        }
    }
}

/// (margin, loss) of one row of logits for goal class `class`; the attacker minimises both.
fn score(z: &[f32], class: usize, targeted: bool, loss: Loss) -> (f64, f64) {
    let zc = z[class] as f64;
    let other = z.iter().enumerate().filter(|&(j, _)| j != class).fold(f64::NEG_INFINITY, |m, (_, &v)| m.max(v as f64));
    let margin = if targeted { other - zc } else { zc - other };
    let value = match loss {
        Loss::CrossEntropy => {
            let mx = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = mx + z.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
            if targeted {
                lse - zc
            } else {
                zc - lse
            }
        }
        _ => margin,
    };
    if margin.is_nan() || value.is_nan() {
        return (f64::INFINITY, f64::INFINITY);
    }
    (margin, value)
}

/// A sample still being attacked in the current restart.
struct Row {
    /// Index in the batch.
    sample: usize,
    rng: ChaCha8Rng,
    best: Vec<f32>,
    margin: f64,
    loss: f64,
    /// Queries spent in this restart, and the query that produced `best`.
    queries: u32,
    best_at: u32,
}

/// What the proposals of one run share.
struct Ctx<'a> {
    threat: &'a ThreatModel,
    shape: [usize; 3],
    per: usize,
    /// Clean inputs of the batch, row-major.
    x0: &'a [f32],
    /// L∞: per pixel, the admissible values x + ε and x − ε, clamped to the bounds.
    up: Vec<f32>,
    dn: Vec<f32>,
}

/// Scratch buffers reused across proposals.
#[derive(Default)]
struct Scratch {
    signs: Vec<bool>,
    delta: Vec<f64>,
    patch: Vec<f64>,
}

impl Ctx<'_> {
    fn x0(&self, sample: usize) -> &[f32] {
        &self.x0[sample * self.per..(sample + 1) * self.per]
    }

    /// Appends the starting point of `row` to `cand`.
    fn start(&self, row: &mut Row, cand: &mut Vec<f32>, sc: &mut Scratch) {
        let [c, h, w] = self.shape;
        let at = cand.len();
        match self.threat.norm {
            Norm::Linf => {
                let (up, dn) = self.up_dn(row.sample);
                cand.extend_from_slice(up);
                let x = &mut cand[at..];
                for ch in 0..c {
                    for j in 0..w {
                        if !row.rng.random::<bool>() {
                            for i in 0..h {
                                let k = (ch * h + i) * w + j;
                                x[k] = dn[k];
                            }
                        }
                    }
                }
            }
            Norm::L2 => {
                let s = (h / 5).clamp(1, w);
                let bump = Bump::new(s);
                let (nh, nw) = (h / s, w / s);
                let (oh, ow) = ((h - nh * s) / 2, (w - nw * s) / 2);
                sc.delta.clear();
                sc.delta.resize(self.per, 0.0);
                for bi in 0..nh {
                    for bj in 0..nw {
                        let pattern = bump.pattern(row.rng.random::<bool>());
                        for ch in 0..c {
                            let sign = if row.rng.random::<bool>() { 1.0 } else { -1.0 };
                            for a in 0..s {
                                for b in 0..s {
                                    sc.delta[(ch * h + oh + bi * s + a) * w + ow + bj * s + b] +=
                                        sign * pattern[a * s + b];
                                }
                            }
                        }
                    }
                }
                self.push_l2(row.sample, &sc.delta, cand);
            }
        }
    }

    fn up_dn(&self, sample: usize) -> (&[f32], &[f32]) {
        let r = sample * self.per..(sample + 1) * self.per;
        (&self.up[r.clone()], &self.dn[r])
    }

    /// Appends x0 + ε·δ/‖δ‖₂, clamped to the bounds and made exactly admissible, to `cand`.
    fn push_l2(&self, sample: usize, delta: &[f64], cand: &mut Vec<f32>) {
        let x0 = self.x0(sample);
        let norm = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
        let f = self.threat.eps / (norm + 1e-12);
        let (lo, hi) = (self.threat.bounds.lo as f64, self.threat.bounds.hi as f64);
        let at = cand.len();
        cand.extend(x0.iter().zip(delta).map(|(&x, &d)| (x as f64 + f * d).clamp(lo, hi) as f32));
        self.threat.project_exact(x0, &mut cand[at..]);
    }

    /// Appends a proposal for `row` with window side `s` to `cand`.
    fn propose(&self, row: &mut Row, s: usize, bump: &Bump, cand: &mut Vec<f32>, sc: &mut Scratch) {
        let [c, h, w] = self.shape;
        let vh = row.rng.random_range(0..(h - s).max(1));
        let vw = row.rng.random_range(0..(w - s).max(1));
        match self.threat.norm {
            Norm::Linf => {
                let (up, dn) = self.up_dn(row.sample);
                let best = &row.best;
                let window =
                    |ch: usize| (vh..vh + s).flat_map(move |i| (vw..vw + s).map(move |j| (ch * h + i) * w + j));
                sc.signs.resize(c, false);
                for _ in 0..MAX_REDRAWS {
                    for v in sc.signs.iter_mut() {
                        *v = row.rng.random::<bool>();
                    }
                    let signs = &sc.signs;
                    let changes = (0..c).any(|ch| window(ch).any(|k| best[k] != if signs[ch] { up[k] } else { dn[k] }));
                    if changes {
                        break;
                    }
                }
                let at = cand.len();
                cand.extend_from_slice(best);
                let x = &mut cand[at..];
                for ch in 0..c {
                    let src = if sc.signs[ch] { up } else { dn };
                    for k in window(ch) {
                        x[k] = src[k];
                    }
                }
            }
            Norm::L2 => {
                let vh2 = row.rng.random_range(0..(h - s).max(1));
                let vw2 = row.rng.random_range(0..(w - s).max(1));
                let pattern = bump.pattern(row.rng.random::<bool>());
                let x0 = self.x0(row.sample);
                sc.delta.clear();
                sc.delta.extend(row.best.iter().zip(x0).map(|(&b, &x)| b as f64 - x as f64));
                let delta = &mut sc.delta;
                let image2: f64 = delta.iter().map(|v| v * v).sum();
                let eps2 = self.threat.eps * self.threat.eps;
                let in1 = |i: usize, j: usize| (vh..vh + s).contains(&i) && (vw..vw + s).contains(&j);
                for ch in 0..c {
                    let sign = if row.rng.random::<bool>() { 1.0 } else { -1.0 };
                    let at = |i: usize, j: usize| (ch * h + i) * w + j;
                    // Norms of this channel's perturbation in window 1, and in windows 1 ∪ 2.
                    let mut w1 = 0f64;
                    for i in vh..vh + s {
                        for j in vw..vw + s {
                            w1 += delta[at(i, j)] * delta[at(i, j)];
                        }
                    }
                    let mut union = w1;
                    for i in vh2..vh2 + s {
                        for j in vw2..vw2 + s {
                            if !in1(i, j) {
                                union += delta[at(i, j)] * delta[at(i, j)];
                            }
                        }
                    }
                    let w1 = w1.sqrt();
                    sc.patch.clear();
                    for a in 0..s {
                        for b in 0..s {
                            sc.patch.push(pattern[a * s + b] * sign + delta[at(vh + a, vw + b)] / (1e-12 + w1));
                        }
                    }
                    let len = sc.patch.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let f = ((eps2 - image2).max(0.0) / c as f64 + union).sqrt() / (1e-12 + len);
                    for i in vh2..vh2 + s {
                        for j in vw2..vw2 + s {
                            delta[at(i, j)] = 0.0;
                        }
                    }
                    for a in 0..s {
                        for b in 0..s {
                            delta[at(vh + a, vw + b)] = sc.patch[a * s + b] * f;
                        }
                    }
                }
                self.push_l2(row.sample, &sc.delta, cand);
            }
        }
    }
}

/// Logits (rows × K, row-major, on the CPU) of the candidates.
fn query(model: &dyn Classifier, cand: &[f32], rows: usize, shape: [usize; 3], like: &Tensor) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    let x = Tensor::from_slice(cand, (rows, c, h, w), like.device())?;
    let x = if like.dtype() == DType::F32 { x } else { x.to_dtype(like.dtype())? };
    let logits = model.logits(&x)?;
    Ok(logits.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

impl Attack for Square {
    fn name(&self) -> &str {
        Self::NAME
    }

    declared_params!();

    fn kind(&self) -> AttackKind {
        AttackKind::GradientFree
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let n = batch.len();
        let &[_, c, h, w] = batch.x0.dims() else {
            let message = format!("it needs inputs (N, C, H, W), got {:?}", batch.x0.dims());
            return Err(AttackError::Unsupported { attack: Self::NAME.into(), message });
        };
        let shape = [c, h, w];
        let per = c * h * w;
        let x0 = batch.x0.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let (up, dn) = match threat.norm {
            Norm::Linf => {
                // The corners of the ε-cube, clamped to the bounds, exactly admissible in f32.
                let mut up: Vec<f32> = x0.iter().map(|&v| v + 2.0 * threat.eps as f32).collect();
                let mut dn: Vec<f32> = x0.iter().map(|&v| v - 2.0 * threat.eps as f32).collect();
                for i in 0..n {
                    let r = i * per..(i + 1) * per;
                    threat.project_exact(&x0[r.clone()], &mut up[r.clone()]);
                    threat.project_exact(&x0[r.clone()], &mut dn[r]);
                }
                (up, dn)
            }
            Norm::L2 => (Vec::new(), Vec::new()),
        };
        let ctx = Ctx { threat, shape, per, x0: &x0, up, dn };
        let k = model.num_classes();
        let goal = batch.goal;

        let mut found = Found::new(batch.x0)?;
        let mut best_margin = vec![f64::INFINITY; n];
        let mut spent = vec![0u32; n];
        let mut cost = Cost::default();
        let mut cand: Vec<f32> = Vec::new();
        let mut sc = Scratch::default();

        for restart in 0..self.restarts {
            let key = batch.noise_key(restart as u64);
            let mut rows: Vec<Row> = (0..n)
                .filter(|&i| !found.reached[i])
                .map(|i| Row {
                    sample: i,
                    rng: key.rng(batch.ids[i]),
                    best: Vec::new(),
                    margin: f64::INFINITY,
                    loss: f64::INFINITY,
                    queries: 0,
                    best_at: 0,
                })
                .collect();
            let mut bump = Bump::new(0);
            // Iteration `it` = None is the starting point.
            for it in std::iter::once(None).chain((0..self.queries).map(Some)) {
                if rows.is_empty() {
                    break;
                }
                cand.clear();
                match it {
                    None => rows.iter_mut().for_each(|row| ctx.start(row, &mut cand, &mut sc)),
                    Some(it) => {
                        let s = side(self.p_at(it), shape, threat.norm);
                        if threat.norm == Norm::L2 && bump.side() != s {
                            bump = Bump::new(s);
                        }
                        rows.iter_mut().for_each(|row| ctx.propose(row, s, &bump, &mut cand, &mut sc));
                    }
                }
                let logits = query(model, &cand, rows.len(), shape, batch.x0)?;
                cost.forwards += rows.len() as u64;
                for (j, row) in rows.iter_mut().enumerate() {
                    let (margin, loss) =
                        score(&logits[j * k..(j + 1) * k], goal.classes[row.sample] as usize, goal.targeted, self.loss);
                    row.queries += 1;
                    if loss < row.loss || margin <= 0.0 || it.is_none() {
                        let x = &cand[j * per..(j + 1) * per];
                        if row.best.is_empty() {
                            row.best = x.to_vec();
                        } else {
                            row.best.copy_from_slice(x);
                        }
                        row.loss = loss.min(row.loss);
                        row.margin = margin;
                        row.best_at = row.queries;
                    }
                }
                // Samples that reached the goal leave.
                rows.retain(|row| {
                    if row.margin > 0.0 {
                        return true;
                    }
                    let i = row.sample;
                    spent[i] += row.queries;
                    found.set(i, &row.best, spent[i], true);
                    false
                });
            }
            // The unbroken: keep the point with the smallest margin over the restarts.
            for row in rows {
                let i = row.sample;
                if row.margin < best_margin[i] {
                    best_margin[i] = row.margin;
                    found.set(i, &row.best, spent[i] + row.best_at, false);
                }
                spent[i] += row.queries;
            }
        }
        AttackOutput::from_found(found, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::distances;
    use gauntlet_models::{predictions, Bounds, Goal};
    use rand::SeedableRng;

    /// A linear classifier on (3, 6, 8) inputs with 4 classes: fast, and non-square, multi-channel.
    /// It ignores the last row and column, which Square's windows never reach (as in the reference).
    struct Linear {
        w: Tensor,
        b: Tensor,
        device: Device,
    }

    const SHAPE: [usize; 3] = [3, 6, 8];

    impl Linear {
        fn new() -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let d = SHAPE.iter().product::<usize>();
            let [_, rows, cols] = SHAPE;
            let edge = |k: usize| (k % (rows * cols)) / cols == rows - 1 || k % cols == cols - 1;
            let w: Vec<f32> = (0..4 * d).map(|k| if edge(k % d) { 0.0 } else { rng.random_range(-1.0..1.0) }).collect();
            let device = Device::Cpu;
            let w = Tensor::from_vec(w, (4, d), &device).unwrap();
            let b = Tensor::from_vec(vec![0.5f32, -0.5, 0.2, -0.2], 4, &device).unwrap();
            Linear { w, b, device }
        }

        /// The class that can gain most on `label` within the L∞ ball and the bounds, and its
        /// largest lead: exact for a linear model, (z_j − z_y)(x0 + δ) being separable in the pixels.
        /// The sample can be broken iff the lead is positive.
        fn linf_easiest(&self, x0: &[f32], label: usize, eps: f64) -> (u32, f64) {
            let w = self.w.to_vec2::<f32>().unwrap();
            let b = self.b.to_vec1::<f32>().unwrap();
            let lead = |j: usize| {
                let mut gap = (b[j] - b[label]) as f64;
                for (k, &x) in x0.iter().enumerate() {
                    let d = (w[j][k] - w[label][k]) as f64;
                    let v = if d > 0.0 { (x as f64 + eps).min(1.0) } else { (x as f64 - eps).max(0.0) };
                    gap += d * v;
                }
                gap
            };
            (0..4).filter(|&j| j != label).map(|j| (j as u32, lead(j))).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap()
        }

        /// Whether some class could overtake `label` within the L2 ball if there were no bounds:
        /// a necessary condition for breaking the sample.
        fn l2_breakable_without_bounds(&self, x0: &[f32], label: usize, eps: f64) -> bool {
            let w = self.w.to_vec2::<f32>().unwrap();
            let b = self.b.to_vec1::<f32>().unwrap();
            (0..4).filter(|&j| j != label).any(|j| {
                let d: Vec<f64> = (0..x0.len()).map(|k| (w[j][k] - w[label][k]) as f64).collect();
                let gap = (b[j] - b[label]) as f64 + d.iter().zip(x0).map(|(d, &x)| d * x as f64).sum::<f64>();
                gap + eps * d.iter().map(|v| v * v).sum::<f64>().sqrt() > 0.0
            })
        }
    }

    impl Classifier for Linear {
        fn logits(&self, x: &Tensor) -> gauntlet_models::Result<Tensor> {
            Ok(x.flatten_from(1)?.matmul(&self.w.t()?)?.broadcast_add(&self.b)?)
        }
        fn input_shape(&self) -> [usize; 3] {
            SHAPE
        }
        fn num_classes(&self) -> usize {
            4
        }
        fn device(&self) -> &Device {
            &self.device
        }
    }

    fn inputs(n: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = SHAPE.iter().product::<usize>();
        let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(0.0..1.0)).collect();
        Tensor::from_vec(v, (n, SHAPE[0], SHAPE[1], SHAPE[2]), &Device::Cpu).unwrap()
    }

    fn attack(spec: &str) -> Square {
        Square::from_params(Params::parse(Square::NAME, spec).unwrap()).unwrap()
    }

    #[test]
    fn parameters_parse_and_reject() {
        let d = attack("");
        assert_eq!((d.queries, d.p_init, d.restarts, d.loss), (5000, 0.8, 1, Loss::Margin));
        assert_eq!(d.params(), "queries=5000,p_init=0.8,restarts=1,loss=margin");
        let a = attack("queries=300,p_init=0.3,restarts=2,loss=ce");
        assert_eq!((a.queries, a.p_init, a.restarts, a.loss), (300, 0.3, 2, Loss::CrossEntropy));
        assert!(!a.needs_gradients());
        assert_eq!(a.strengthened().unwrap().params(), "queries=600,p_init=0.3,restarts=3,loss=ce");
        for bad in ["queries=0", "restarts=0", "p_init=0", "p_init=1.5", "loss=dlr", "steps=3", "queries=x"] {
            let r = Params::parse(Square::NAME, bad).and_then(Square::from_params);
            assert!(r.is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn p_schedule_matches_the_reference() {
        // Values printed by torchattacks 3.5.1's Square.p_selection (p_init 0.8).
        let a = Square { queries: 10000, ..Square::default() };
        let expect = [
            (0, 0.8),
            (10, 0.8),
            (11, 0.4),
            (50, 0.4),
            (51, 0.2),
            (200, 0.2),
            (201, 0.1),
            (500, 0.1),
            (501, 0.05),
            (1000, 0.05),
            (1001, 0.025),
            (2000, 0.025),
            (2001, 0.0125),
            (4000, 0.0125),
            (4001, 0.00625),
            (6000, 0.00625),
            (6001, 0.003125),
            (8000, 0.003125),
            (8001, 0.0015625),
            (9999, 0.0015625),
        ];
        for (it, p) in expect {
            assert_eq!(a.p_at(it), p, "it {it}");
        }
        let a = Square { queries: 1000, ..Square::default() };
        let expect = [
            (0, 0.8),
            (1, 0.8),
            (2, 0.4),
            (5, 0.4),
            (6, 0.2),
            (20, 0.2),
            (21, 0.1),
            (50, 0.1),
            (51, 0.05),
            (100, 0.05),
            (101, 0.025),
            (200, 0.025),
            (201, 0.0125),
            (400, 0.0125),
            (401, 0.00625),
            (600, 0.00625),
            (601, 0.003125),
            (800, 0.003125),
            (801, 0.0015625),
            (999, 0.0015625),
        ];
        for (it, p) in expect {
            assert_eq!(a.p_at(it), p, "it {it}");
        }
        let a = Square { queries: 300, ..Square::default() };
        let first: Vec<f64> = (0..8).map(|it| a.p_at(it)).collect();
        assert_eq!(first, [0.8, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1]);
    }

    #[test]
    fn window_sides_follow_the_reference() {
        let mnist = [1, 28, 28];
        assert_eq!(side(0.8, mnist, Norm::Linf), 25); // √627.2 = 25.04
        assert_eq!(side(0.4, mnist, Norm::Linf), 18); // √313.6 = 17.7
        assert_eq!(side(0.4, mnist, Norm::L2), 19); // even → odd
        assert_eq!(side(0.0015625, mnist, Norm::Linf), 1);
        assert_eq!(side(0.0015625, mnist, Norm::L2), 3);
        assert_eq!(side(1.0, mnist, Norm::L2), 28); // 29 is clipped to the image
        assert_eq!(side(0.8, [3, 32, 32], Norm::Linf), 29);
        assert_eq!(side(0.8, [3, 6, 8], Norm::L2), 6);
    }

    #[test]
    fn bumps_match_the_reference() {
        // torchattacks' eta(5) and eta(4) (before the random transposition), printed by PyTorch.
        let b = Bump::new(5);
        let top = [0.0491621606, 0.1597770303, 0.1597770303, 0.1597770303, 0.0491621606];
        let mid = [0.0491621606, 0.1597770303, 0.6022365093, 0.1597770303, 0.0491621606];
        let low = [-0.0455901474, -0.1481679827, -0.1481679827, -0.1481679827, -0.0455901474];
        let bot = [-0.0455901474, -0.1481679827, -0.5584793091, -0.1481679827, -0.0455901474];
        let expect: Vec<f64> = [top, mid, low, bot, low].concat();
        for (k, (a, e)) in b.up.iter().zip(&expect).enumerate() {
            assert!((a - e).abs() < 1e-7, "eta(5)[{k}] = {a}, torch {e}");
        }
        assert_eq!(b.side(), 5);
        assert_eq!(b.pattern(true)[5], b.pattern(false)[1], "the transpose");
        let b = Bump::new(4);
        let expect = [0.0494015403, 0.1605550051, 0.1605550051, 0.1605550051, 0.0494015403, 0.1605550051, 0.6051688790];
        for (a, e) in b.up.iter().zip(&expect) {
            assert!((a - e).abs() < 1e-7);
        }
        assert!((b.up.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn margins_and_losses() {
        let z = [1.0f32, 3.0, 2.0];
        assert_eq!(score(&z, 1, false, Loss::Margin), (1.0, 1.0));
        assert_eq!(score(&z, 0, false, Loss::Margin), (-2.0, -2.0));
        assert_eq!(score(&z, 2, true, Loss::Margin), (1.0, 1.0));
        let lse = (1f64.exp() + 3f64.exp() + 2f64.exp()).ln();
        let (m, l) = score(&z, 1, false, Loss::CrossEntropy);
        assert!(m == 1.0 && (l - (3.0 - lse)).abs() < 1e-12);
        let (m, l) = score(&z, 2, true, Loss::CrossEntropy);
        assert!(m == 1.0 && (l - (lse - 2.0)).abs() < 1e-12);
        assert_eq!(score(&[f32::NAN, 1.0], 0, false, Loss::Margin), (f64::INFINITY, f64::INFINITY));
    }

    fn run(a: &Square, model: &Linear, x0: &Tensor, goal: &Goal, ids: &[u64], t: &ThreatModel) -> AttackOutput {
        let b = AttackBatch { x0, goal, ids, seed: 5, stream: 1 };
        a.run(model, &b, t).unwrap()
    }

    #[test]
    fn outputs_stay_within_budget_and_bounds_and_reach_the_goal() {
        let model = Linear::new();
        let n = 12;
        let x0 = inputs(n, 1);
        let labels = predictions(&model.logits(&x0).unwrap()).unwrap();
        let ids: Vec<u64> = (100..100 + n as u64).collect();
        let rows0 = x0.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        for (norm, eps) in [(Norm::Linf, 0.08), (Norm::L2, 1.0)] {
            let t = ThreatModel::new(norm, eps, Bounds::default()).unwrap();
            for (targeted, loss) in [(false, "margin"), (false, "ce"), (true, "margin"), (true, "ce")] {
                let goal = if targeted {
                    Goal::targeted((0..n).map(|i| model.linf_easiest(&rows0[i], labels[i] as usize, 0.08).0).collect())
                } else {
                    Goal::untargeted(labels.clone())
                };
                let a = attack(&format!("queries=200,restarts=2,loss={loss}"));
                let out = run(&a, &model, &x0, &goal, &ids, &t);
                assert!(out.cost.forwards <= (n * 201 * 2) as u64 && out.cost.forwards >= n as u64);
                assert_eq!(out.cost.gradients, 0);
                let rows = out.x_adv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
                let preds = predictions(&model.logits(&out.x_adv).unwrap()).unwrap();
                for i in 0..n {
                    let (linf, l2) = distances(&rows0[i], &rows[i]);
                    let d = if norm == Norm::Linf { linf } else { l2 };
                    assert!(d <= eps, "{norm} {targeted} {loss}: row {i} at distance {d} > {eps}");
                    assert!(rows[i].iter().all(|v| (0.0..=1.0).contains(v)));
                    assert!(t.admits(&rows0[i], &rows[i]));
                    assert_eq!(out.reached[i], goal.achieved(i, preds[i]), "{norm} {targeted} {loss}: row {i}");
                    if out.reached[i] {
                        assert!(out.steps[i].unwrap() >= 1 && out.steps[i].unwrap() <= 402);
                    }
                }
                let hits = out.reached.iter().filter(|&&r| r).count();
                assert!(hits >= n / 2, "{norm} targeted={targeted} loss={loss}: only {hits} of {n} reached");
                assert!(hits < n || out.cost.forwards < (n * 201) as u64, "samples leave when broken");
            }
        }
    }

    #[test]
    fn breaks_what_a_linear_model_allows_and_nothing_more() {
        // On a linear model the exact answer is known: in L∞ a sample can be broken iff some
        // class's largest achievable lead is positive; in L2 the L∞ ball of radius ε/√D lies
        // inside the ball, and without the bounds a sample is breakable iff ε exceeds its distance
        // to the nearest decision boundary.
        let model = Linear::new();
        let n = 40;
        let x0 = inputs(n, 4);
        let labels = predictions(&model.logits(&x0).unwrap()).unwrap();
        let rows0 = x0.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let ids: Vec<u64> = (0..n as u64).collect();
        let goal = Goal::untargeted(labels.clone());
        let dim = rows0[0].len() as f64;
        for (norm, eps) in [(Norm::Linf, 0.06), (Norm::L2, 0.8)] {
            let t = ThreatModel::new(norm, eps, Bounds::default()).unwrap();
            let out = run(&attack("queries=1000"), &model, &x0, &goal, &ids, &t);
            let hits = out.reached.iter().filter(|&&r| r).count();
            let (lower, upper): (Vec<bool>, Vec<bool>) = (0..n)
                .map(|i| {
                    let l = labels[i] as usize;
                    match norm {
                        Norm::Linf => {
                            let b = model.linf_easiest(&rows0[i], l, eps).1 > 0.0;
                            (b, b)
                        }
                        Norm::L2 => (
                            model.linf_easiest(&rows0[i], l, eps / dim.sqrt()).1 > 0.0,
                            model.l2_breakable_without_bounds(&rows0[i], l, eps),
                        ),
                    }
                })
                .unzip();
            for (i, (&hit, &can)) in out.reached.iter().zip(&upper).enumerate() {
                assert!(!hit || can, "{norm}: sample {i} broken beyond what the budget allows");
            }
            let (lower, upper) = (lower.iter().filter(|&&b| b).count(), upper.iter().filter(|&&b| b).count());
            assert!(lower < upper || norm == Norm::Linf);
            // L2 Square searches sums of bumps in windows of side ≥ 3, which on a 6×8 image span
            // only part of the space: it is held to 80% of the lower bound, L∞ to 90% of the exact count.
            let share = if norm == Norm::Linf { 0.9 } else { 0.8 };
            assert!(
                hits as f64 >= share * lower as f64,
                "{norm}: broke {hits} of {n}; at least {lower} and at most {upper} can be broken"
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_the_batch() {
        let model = Linear::new();
        let x0 = inputs(6, 2);
        let labels = predictions(&model.logits(&x0).unwrap()).unwrap();
        let ids: Vec<u64> = (0..6).collect();
        for (norm, eps) in [(Norm::Linf, 0.01), (Norm::L2, 0.2)] {
            let t = ThreatModel::new(norm, eps, Bounds::default()).unwrap();
            let a = attack("queries=50");
            let all = run(&a, &model, &x0, &Goal::untargeted(labels.clone()), &ids, &t);
            let one = run(&a, &model, &x0.narrow(0, 4, 1).unwrap(), &Goal::untargeted(vec![labels[4]]), &ids[4..5], &t);
            let all_rows = all.x_adv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
            let one_rows = one.x_adv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(all_rows[4], one_rows[0]);
            assert_eq!((all.steps[4], all.reached[4]), (one.steps[0], one.reached[0]));
            assert_ne!(all_rows[3], x0.narrow(0, 3, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }

    #[test]
    fn linf_points_are_vertices_and_l2_points_lie_on_the_sphere() {
        // Away from the bounds every L∞ coordinate is x ± ε, and the L2 perturbation has norm ε.
        let model = Linear::new();
        let x0 = (inputs(4, 3) * 0.2).unwrap().affine(1.0, 0.4).unwrap();
        let labels = predictions(&model.logits(&x0).unwrap()).unwrap();
        let rows0 = x0.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let goal = Goal::untargeted(labels);
        let ids = [7u64, 8, 9, 10];
        let t = ThreatModel::new(Norm::Linf, 0.05, Bounds::default()).unwrap();
        let out = run(&attack("queries=20"), &model, &x0, &goal, &ids, &t);
        for (r, r0) in out.x_adv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap().iter().zip(&rows0) {
            assert!(r.iter().zip(r0).all(|(a, b)| ((a - b).abs() - 0.05).abs() < 1e-6));
        }
        let t = ThreatModel::new(Norm::L2, 0.3, Bounds::default()).unwrap();
        let out = run(&attack("queries=20"), &model, &x0, &goal, &ids, &t);
        for (r, r0) in out.x_adv.flatten_from(1).unwrap().to_vec2::<f32>().unwrap().iter().zip(&rows0) {
            let (_, l2) = distances(r0, r);
            assert!((l2 - 0.3).abs() < 1e-5 && l2 <= 0.3, "{l2}");
        }
    }
}
