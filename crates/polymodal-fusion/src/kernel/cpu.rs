//! The CPU implementation of [`GatedUnitOps`] on Burn's Flex backend: the
//! gated unit's definition written out in plain loops, the reference the
//! wgpu kernel is tested against.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use polymodal_wgpu::extension::{flex_tensor, flex_values};

use super::GatedUnitOps;

/// For sample `b` and hidden unit `j`: the gates over the modalities (zero
/// when absent) and the fused value, as the kernel computes them.
fn gates(s: &[f32], u: &[f32], p: &[f32], shape: &[usize], b: usize, j: usize) -> (Vec<f32>, f32) {
    let (m_count, hidden) = (shape[1], shape[2]);
    let at = |m: usize| (b * m_count + m) * hidden + j;
    let present = |m: usize| p[b * m_count + m] > 0.5;
    let max = (0..m_count)
        .filter(|&m| present(m))
        .map(|m| s[at(m)])
        .fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = (0..m_count)
        .map(|m| {
            if present(m) {
                (s[at(m)] - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f32 = e.iter().sum();
    if total == 0.0 {
        return (vec![0.0; m_count], 0.0);
    }
    let z: Vec<f32> = e.iter().map(|v| v / total).collect();
    let fused = (0..m_count).map(|m| z[m] * u[at(m)].tanh()).sum();
    (z, fused)
}

/// `∂L/∂s` (`scores` true) or `∂L/∂u` at every (b, m, j).
fn gated_grad(
    s: FlexTensor,
    u: FlexTensor,
    p: FlexTensor,
    grad: FlexTensor,
    scores: bool,
) -> FlexTensor {
    let (s, shape) = flex_values(&s);
    let ((u, _), (p, _), (g, _)) = (flex_values(&u), flex_values(&p), flex_values(&grad));
    let (batch, m_count, hidden) = (shape[0], shape[1], shape[2]);
    let mut out = vec![0.0f32; s.len()];
    for b in 0..batch {
        for j in 0..hidden {
            let (z, fused) = gates(&s, &u, &p, &shape, b, j);
            for (m, gate) in z.iter().enumerate() {
                let at = (b * m_count + m) * hidden + j;
                let t = u[at].tanh();
                let factor = if scores { t - fused } else { 1.0 - t * t };
                out[at] = g[b * hidden + j] * gate * factor;
            }
        }
    }
    flex_tensor(out, shape)
}

impl GatedUnitOps for Flex {
    fn gated_unit(scores: FlexTensor, candidates: FlexTensor, present: FlexTensor) -> FlexTensor {
        let (s, shape) = flex_values(&scores);
        let ((u, _), (p, _)) = (flex_values(&candidates), flex_values(&present));
        let (batch, hidden) = (shape[0], shape[2]);
        let mut out = Vec::with_capacity(batch * hidden);
        for b in 0..batch {
            for j in 0..hidden {
                out.push(gates(&s, &u, &p, &shape, b, j).1);
            }
        }
        flex_tensor(out, vec![batch, hidden])
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
