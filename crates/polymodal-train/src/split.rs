//! Splitting a dataset's sample indices: k folds for out-of-fold predictions,
//! and a stratified hold-out for validation.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use polymodal_core::{Error, Result};

/// `k` disjoint folds covering `0..n`, shuffled with `seed`; fold sizes
/// differ by at most one. Train on the other folds, predict the held-out one.
pub fn k_folds(n: usize, k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if k < 2 || k > n {
        return Err(Error::Config(format!(
            "k-fold needs 2 <= k <= samples, got k = {k} for {n} samples"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut folds = vec![Vec::new(); k];
    for (position, index) in order.into_iter().enumerate() {
        folds[position % k].push(index);
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    Ok(folds)
}

/// Splits `0..labels.len()` into (kept, held out), holding out `fraction` of
/// every class (rounded, at least one of each class with two or more
/// samples), chosen with `seed`. Both lists are sorted.
pub fn stratified_holdout(
    labels: &[usize],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "hold-out fraction must be in (0, 1), got {fraction}"
        )));
    }
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(index);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for mut members in by_class.into_values() {
        members.shuffle(&mut rng);
        let count = if members.len() < 2 {
            0
        } else {
            ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len() - 1)
        };
        held.extend_from_slice(&members[..count]);
        kept.extend_from_slice(&members[count..]);
    }
    kept.sort_unstable();
    held.sort_unstable();
    Ok((kept, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_samples() {
        let folds = k_folds(10, 3, 1).unwrap();
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 3, 3]);
        assert_eq!(folds, k_folds(10, 3, 1).unwrap());
        assert_ne!(folds, k_folds(10, 3, 2).unwrap());
        assert!(k_folds(3, 4, 0).is_err());
        assert!(k_folds(3, 1, 0).is_err());
    }

    #[test]
    fn holdout_takes_the_fraction_of_every_class() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 80)).collect();
        let (kept, held) = stratified_holdout(&labels, 0.1, 3).unwrap();
        assert_eq!(held.len(), 10);
        assert_eq!(held.iter().filter(|&&i| labels[i] == 1).count(), 2);
        assert_eq!(kept.len() + held.len(), 100);
        assert!(held.iter().all(|i| !kept.contains(i)));
        assert!(stratified_holdout(&labels, 1.0, 3).is_err());
    }
}
