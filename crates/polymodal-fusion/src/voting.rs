//! Model-level (late) fusion by voting.

use burn::prelude::*;

use polymodal_core::Result;

use crate::late::check_predictions;

/// How the per-model predictions vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voting {
    /// Each present model votes for its most probable class; the class with
    /// most votes wins, ties broken by the mean probability.
    Hard,
    /// The mean of the present models' probabilities.
    Soft,
}

impl Voting {
    /// Combines `[batch, classes]` probabilities into `[batch, classes]` scores
    /// that sum to one (vote shares for [`Voting::Hard`]); `present[m]`
    /// `[batch]` says which samples model `m` saw its modality for. A sample
    /// no model saw gets uniform scores.
    pub fn combine(
        &self,
        probabilities: &[Tensor<2>],
        present: &[Tensor<1, Bool>],
    ) -> Result<Tensor<2>> {
        check_predictions("voting", probabilities, present, None)?;
        let [batch, classes] = probabilities[0].dims();
        let device = probabilities[0].device();
        let mut soft = Tensor::<2>::zeros([batch, classes], &device);
        let mut votes = Tensor::<2>::zeros([batch, classes], &device);
        let mut count = Tensor::<2>::zeros([batch, 1], &device);
        for (p, present) in probabilities.iter().zip(present) {
            let w = present.clone().float().unsqueeze_dim::<2>(1);
            let best = p.clone().max_dim(1).expand([batch, classes]);
            votes = votes + p.clone().greater_equal(best).float() * w.clone();
            soft = soft + p.clone() * w.clone();
            count = count + w;
        }
        let soft =
            (soft + count.clone().equal_elem(0.0).float() / classes as f32) / count.clamp_min(1.0);
        Ok(match self {
            Voting::Soft => soft,
            Voting::Hard => {
                // The mean probability is below one, so it only breaks ties.
                let scores = votes + soft * 0.5;
                let total = scores.clone().sum_dim(1);
                scores / total
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[[f32; 3]]) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(rows.concat(), [rows.len(), 3]),
            &Device::flex(),
        )
    }

    fn argmax(x: Tensor<2>) -> Vec<i64> {
        x.argmax(1).try_into_vec_as::<i64>().unwrap()
    }

    #[test]
    fn hard_and_soft_voting_differ_where_they_should() {
        // Two models mildly prefer class 0, one is sure of class 2.
        let p = [
            t(&[[0.4, 0.3, 0.3]]),
            t(&[[0.4, 0.3, 0.3]]),
            t(&[[0.0, 0.0, 1.0]]),
        ];
        let present = vec![Tensor::<1, Bool>::from_data([true], &Device::flex()); 3];
        assert_eq!(argmax(Voting::Hard.combine(&p, &present).unwrap()), vec![0]);
        assert_eq!(argmax(Voting::Soft.combine(&p, &present).unwrap()), vec![2]);
        let sums = Voting::Hard
            .combine(&p, &present)
            .unwrap()
            .sum_dim(1)
            .into_scalar::<f32>();
        assert!((sums - 1.0).abs() < 1e-6);
    }

    #[test]
    fn absent_models_do_not_vote() {
        let p = [t(&[[0.9, 0.1, 0.0]]), t(&[[0.0, 0.2, 0.8]])];
        let present = [
            Tensor::<1, Bool>::from_data([false], &Device::flex()),
            Tensor::<1, Bool>::from_data([true], &Device::flex()),
        ];
        for voting in [Voting::Hard, Voting::Soft] {
            assert_eq!(argmax(voting.combine(&p, &present).unwrap()), vec![2]);
        }
        let none = vec![Tensor::<1, Bool>::from_data([false], &Device::flex()); 2];
        let uniform = Voting::Soft
            .combine(&p, &none)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(
            uniform.iter().all(|&u| (u - 1.0 / 3.0).abs() < 1e-6),
            "{uniform:?}"
        );
        assert!(Voting::Hard.combine(&p, &none[..1]).is_err());
    }
}
