//! LSTM and GRU over padded sequences, uni- or bidirectional, with
//! PyTorch's semantics and weight layout (`torch.nn.LSTM` / `nn.GRU` with
//! `batch_first=True` on a packed sequence): a padding step leaves the state
//! unchanged and outputs zeros, so each sample's backward pass starts at its
//! own last real token, and the final state is that of the last real token.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::weights::Init;
use crate::{Error, Result};

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RnnKind {
    /// Long short-term memory (gates i, f, g, o as in PyTorch).
    Lstm,
    /// Gated recurrent unit (gates r, z, n as in PyTorch).
    Gru,
}

impl RnnKind {
    fn gates(self) -> usize {
        match self {
            RnnKind::Lstm => 4,
            RnnKind::Gru => 3,
        }
    }
}

/// Settings of [`Recurrent`].
#[derive(Config, Debug)]
pub struct RecurrentConfig {
    /// Width of the input vectors.
    pub d_input: usize,
    /// Width of the state per direction.
    pub d_hidden: usize,
    /// LSTM or GRU.
    #[config(default = "RnnKind::Lstm")]
    pub kind: RnnKind,
    /// Stacked layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Also run right to left and concatenate.
    #[config(default = false)]
    pub bidirectional: bool,
}

impl RecurrentConfig {
    /// Width of the outputs: `d_hidden`, doubled when bidirectional.
    pub fn output_dim(&self) -> usize {
        self.d_hidden * if self.bidirectional { 2 } else { 1 }
    }

    /// A randomly initialised module.
    pub fn init(&self, device: &Device) -> Result<Recurrent> {
        self.build(&Init::random(), device)
    }

    /// The module with the weights of a PyTorch `nn.LSTM` / `nn.GRU` stored
    /// in `init`'s scope (`weight_ih_l0`, `…_reverse`, …; e.g.
    /// `init.pp("lstm")` for `lstm.weight_ih_l0`).
    pub fn build(&self, init: &Init, device: &Device) -> Result<Recurrent> {
        if self.d_input == 0 || self.d_hidden == 0 || self.layers == 0 {
            return Err(Error::Config(
                "recurrent layer: widths and layer count must be positive".into(),
            ));
        }
        let directions = if self.bidirectional { 2 } else { 1 };
        let gates = self.kind.gates() * self.d_hidden;
        let mut cells = Vec::new();
        for layer in 0..self.layers {
            let d_in = if layer == 0 {
                self.d_input
            } else {
                self.output_dim()
            };
            for direction in 0..directions {
                let suffix = format!("l{layer}{}", if direction == 1 { "_reverse" } else { "" });
                let linear = |kind: &str, d_in: usize| {
                    let (weight, bias) = (
                        format!("weight_{kind}_{suffix}"),
                        format!("bias_{kind}_{suffix}"),
                    );
                    init.linear_named(&weight, Some(&bias), d_in, gates, device)
                };
                cells.push(Cell {
                    input: linear("ih", d_in)?,
                    hidden: linear("hh", self.d_hidden)?,
                });
            }
        }
        Ok(Recurrent {
            cells,
            kind: self.kind,
            directions,
            d_hidden: self.d_hidden,
        })
    }
}

#[derive(Module, Debug)]
struct Cell {
    /// Input-to-gates, bias `bias_ih`.
    input: Linear,
    /// State-to-gates, bias `bias_hh`.
    hidden: Linear,
}

/// What [`Recurrent::forward`] returns.
#[derive(Debug, Clone)]
pub struct RecurrentOutput {
    /// Last layer's outputs `[batch, length, output_dim]` (zeros at padding).
    pub sequence: Tensor<3>,
    /// Last layer's final state per sample `[batch, output_dim]` (forward
    /// state after the last real token, then the backward state after the
    /// first): PyTorch's `h_n` of the last layer.
    pub last: Tensor<2>,
}

/// A stack of LSTM or GRU layers over padded sequences.
#[derive(Module, Debug)]
pub struct Recurrent {
    cells: Vec<Cell>,
    #[module(skip)]
    kind: RnnKind,
    directions: usize,
    d_hidden: usize,
}

impl Recurrent {
    /// Runs over `x` `[batch, length, d_input]`; `mask` `[batch, length]` is
    /// true at real steps (padding may be anywhere; it is skipped).
    pub fn forward(&self, x: Tensor<3>, mask: Tensor<2, Bool>) -> RecurrentOutput {
        let keep = mask.float().unsqueeze_dim::<3>(2); // [batch, length, 1]
        let mut x = x;
        let mut last = Vec::new();
        for layer in self.cells.chunks(self.directions) {
            last.clear();
            let mut outputs = Vec::new();
            for (direction, cell) in layer.iter().enumerate() {
                let (sequence, state) = self.run(cell, &x, &keep, direction == 1);
                outputs.push(sequence);
                last.push(state);
            }
            x = Tensor::cat(outputs, 2);
        }
        RecurrentOutput {
            sequence: x,
            last: Tensor::cat(last, 1),
        }
    }

    /// One direction of one layer: outputs `[batch, length, hidden]` and the
    /// final state.
    fn run(
        &self,
        cell: &Cell,
        x: &Tensor<3>,
        keep: &Tensor<3>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>) {
        let [batch, length, _] = x.dims();
        let h_dim = self.d_hidden;
        let device = x.device();
        // All input projections at once; only the recurrence is sequential.
        let projected = cell.input.forward(x.clone());
        let mut h = Tensor::<2>::zeros([batch, h_dim], &device);
        let mut c = Tensor::<2>::zeros([batch, h_dim], &device);
        let mut outputs: Vec<Option<Tensor<3>>> = vec![None; length];
        let steps: Vec<usize> = if reverse {
            (0..length).rev().collect()
        } else {
            (0..length).collect()
        };
        for t in steps {
            let at = |t3: &Tensor<3>, width: usize| {
                t3.clone()
                    .slice([0..batch, t..t + 1])
                    .reshape([batch, width])
            };
            let xi = at(&projected, self.kind.gates() * h_dim);
            let m = at(keep, 1);
            let hh = cell.hidden.forward(h.clone());
            let gate =
                |t2: &Tensor<2>, k: usize| t2.clone().slice([0..batch, k * h_dim..(k + 1) * h_dim]);
            let (h_new, c_new) = match self.kind {
                RnnKind::Lstm => {
                    let g = xi + hh;
                    let i = sigmoid(gate(&g, 0));
                    let f = sigmoid(gate(&g, 1));
                    let cand = gate(&g, 2).tanh();
                    let o = sigmoid(gate(&g, 3));
                    let c_new = f * c.clone() + i * cand;
                    (o * c_new.clone().tanh(), c_new)
                }
                RnnKind::Gru => {
                    let r = sigmoid(gate(&xi, 0) + gate(&hh, 0));
                    let z = sigmoid(gate(&xi, 1) + gate(&hh, 1));
                    let n = (gate(&xi, 2) + r * gate(&hh, 2)).tanh();
                    let h_new = (z.clone().neg() + 1.0) * n + z * h.clone();
                    (h_new, c.clone())
                }
            };
            // Padding steps keep the state and output zeros.
            h = h_new.clone() * m.clone() + h * (m.clone().neg() + 1.0);
            c = c_new * m.clone() + c * (m.clone().neg() + 1.0);
            outputs[t] = Some((h_new * m).unsqueeze_dim::<3>(1));
        }
        let outputs: Vec<Tensor<3>> = outputs.into_iter().flatten().collect();
        let sequence = if outputs.is_empty() {
            Tensor::zeros([batch, 0, h_dim], &device)
        } else {
            Tensor::cat(outputs, 1)
        };
        (sequence, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: RnnKind, bidirectional: bool) -> (Recurrent, Device) {
        let device = Device::flex();
        let config = RecurrentConfig::new(3, 4)
            .with_kind(kind)
            .with_layers(2)
            .with_bidirectional(bidirectional);
        (config.init(&device).unwrap(), device)
    }

    #[test]
    fn padding_changes_nothing_in_either_direction() {
        for kind in [RnnKind::Lstm, RnnKind::Gru] {
            let (rnn, device) = run(kind, true);
            let values: Vec<f32> = (0..9).map(|i| (i as f32 * 0.37).sin()).collect();
            let short = Tensor::<3>::from_data(TensorData::new(values.clone(), [1, 3, 3]), &device);
            let mut padded = values;
            padded.extend([5.0; 6]);
            let long = Tensor::<3>::from_data(TensorData::new(padded, [1, 5, 3]), &device);
            let a = rnn.forward(short, Tensor::from_data([[true; 3]], &device));
            let b = rnn.forward(
                long,
                Tensor::from_data([[true, true, true, false, false]], &device),
            );
            let a_last = a.last.try_into_vec_as::<f32>().unwrap();
            let b_last = b.last.try_into_vec_as::<f32>().unwrap();
            for (x, y) in a_last.iter().zip(&b_last) {
                assert!((x - y).abs() < 1e-6, "{kind:?}: {a_last:?} vs {b_last:?}");
            }
            assert_eq!(b.sequence.dims(), [1, 5, 8]);
            let tail = b
                .sequence
                .slice([0..1, 3..5])
                .abs()
                .sum()
                .into_scalar::<f32>();
            assert_eq!(tail, 0.0, "padding outputs zeros");
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(RecurrentConfig::new(0, 4).init(&Device::flex()).is_err());
        assert_eq!(
            RecurrentConfig::new(3, 4)
                .with_bidirectional(true)
                .output_dim(),
            8
        );
    }
}
