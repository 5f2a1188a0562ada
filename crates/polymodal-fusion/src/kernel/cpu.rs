//! The CPU implementation of [`GatedUnitOps`] on Burn's Flex backend: the
//! gated unit's definition written out in plain loops, the reference the
//! wgpu kernel is tested against. Samples are split between the cores, and
//! the per-unit gates go through a scratch buffer rather than allocations.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use polymodal_wgpu::extension::{flex_tensor, flex_values};

use super::GatedUnitOps;

/// Samples below which one thread does all the work.
const PARALLEL_MIN_SAMPLES: usize = 16;

/// The inputs of one call: scores `s` and candidates `u` `[batch, m, hidden]`,
/// presence `p` `[batch, m]`.
struct Inputs {
    s: Vec<f32>,
    u: Vec<f32>,
    p: Vec<f32>,
    batch: usize,
    modalities: usize,
    hidden: usize,
}

impl Inputs {
    fn read(s: &FlexTensor, u: &FlexTensor, p: &FlexTensor) -> Self {
        let (s, shape) = flex_values(s);
        let ((u, _), (p, _)) = (flex_values(u), flex_values(p));
        Self {
            s,
            u,
            p,
            batch: shape[0],
            modalities: shape[1],
            hidden: shape[2],
        }
    }

    /// For sample `b` and hidden unit `j`: the gates over the modalities
    /// (zero when absent) written to `z`, and the fused value, as the
    /// kernel computes them.
    fn gates(&self, b: usize, j: usize, z: &mut [f32]) -> f32 {
        let (m_count, hidden) = (self.modalities, self.hidden);
        let at = |m: usize| (b * m_count + m) * hidden + j;
        let present = |m: usize| self.p[b * m_count + m] > 0.5;
        let max = (0..m_count)
            .filter(|&m| present(m))
            .map(|m| self.s[at(m)])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for (m, gate) in z.iter_mut().enumerate() {
            *gate = if present(m) {
                (self.s[at(m)] - max).exp()
            } else {
                0.0
            };
            total += *gate;
        }
        if total == 0.0 {
            z.fill(0.0);
            return 0.0;
        }
        let mut fused = 0.0;
        for (m, gate) in z.iter_mut().enumerate() {
            *gate /= total;
            fused += *gate * self.u[at(m)].tanh();
        }
        fused
    }
}

/// Runs `f(b, row)` for every sample `b` over its `width` outputs of `out`,
/// the samples split between the cores.
fn for_each_sample(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let batch = out.len() / width.max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batch);
    let run = |first: usize, part: &mut [f32]| {
        for (k, row) in part.chunks_mut(width).enumerate() {
            f(first + k, row);
        }
    };
    if threads <= 1 || batch < PARALLEL_MIN_SAMPLES {
        run(0, out);
        return;
    }
    let per = batch.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, part) in out.chunks_mut(per * width).enumerate() {
            let run = &run;
            scope.spawn(move || run(i * per, part));
        }
    });
}

/// `∂L/∂s` (`scores` true) or `∂L/∂u` at every (b, m, j).
fn gated_grad(
    s: FlexTensor,
    u: FlexTensor,
    p: FlexTensor,
    grad: FlexTensor,
    scores: bool,
) -> FlexTensor {
    let inputs = Inputs::read(&s, &u, &p);
    let (g, _) = flex_values(&grad);
    let (batch, m_count, hidden) = (inputs.batch, inputs.modalities, inputs.hidden);
    let mut out = vec![0.0f32; batch * m_count * hidden];
    for_each_sample(&mut out, m_count * hidden, |b, row| {
        let mut z = vec![0.0; m_count];
        for j in 0..hidden {
            let fused = inputs.gates(b, j, &mut z);
            for (m, gate) in z.iter().enumerate() {
                let t = inputs.u[(b * m_count + m) * hidden + j].tanh();
                let factor = if scores { t - fused } else { 1.0 - t * t };
                row[m * hidden + j] = g[b * hidden + j] * gate * factor;
            }
        }
    });
    flex_tensor(out, &[batch, m_count, hidden])
}

impl GatedUnitOps for Flex {
    fn gated_unit(scores: FlexTensor, candidates: FlexTensor, present: FlexTensor) -> FlexTensor {
        let inputs = Inputs::read(&scores, &candidates, &present);
        let (batch, m_count, hidden) = (inputs.batch, inputs.modalities, inputs.hidden);
        let mut out = vec![0.0f32; batch * hidden];
        for_each_sample(&mut out, hidden, |b, row| {
            let mut z = vec![0.0; m_count];
            for (j, fused) in row.iter_mut().enumerate() {
                *fused = inputs.gates(b, j, &mut z);
            }
        });
        flex_tensor(out, &[batch, hidden])
    }

    fn gated_unit_grad_scores(
        scores: FlexTensor,
        candidates: FlexTensor,
        present: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        gated_grad(scores, candidates, present, grad, true)
    }

    fn gated_unit_grad_candidates(
        scores: FlexTensor,
        candidates: FlexTensor,
        present: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        gated_grad(scores, candidates, present, grad, false)
    }
}
