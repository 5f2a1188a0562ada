//! The bookkeeping of transformers' beam search for one window (length
//! penalty 1, no early stopping), kept on the host.

/// The `k` largest of `scores` and their indices, largest first (ties: the
/// lower index first; NaN ranks below everything). One pass that keeps the
/// best `k` so far in order: beam search asks for 10 of 5 × 51,864 scores
/// each step, where selecting over a list of every index took 3.5 % of a
/// 5-beam transcription (`perf`).
pub(crate) fn top_k(scores: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
    let rank = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate().take_while(|_| k > 0) {
        let key = rank(s);
        // A later index loses ties, so it must beat the last kept strictly.
        if best.len() == k && best.last().is_some_and(|&(last, _)| key <= rank(last)) {
            continue;
        }
        let at = best.partition_point(|&(kept, _)| rank(kept) >= key);
        best.insert(at, (s, i));
        best.truncate(k);
    }
    best.into_iter().map(|(s, i)| (s, i as i64)).unzip()
}

/// The bookkeeping of transformers' beam search for one window (length
/// penalty 1, no early stopping).
pub(crate) struct BeamSearch {
    beams: usize,
    eos: u32,
    /// The running beams' tokens and summed log-probabilities.
    running: Vec<(Vec<u32>, f32)>,
    /// The best finished hypotheses (length-normalised score, tokens with
    /// `<|endoftext|>`), at most `beams`, best first.
    finished: Vec<(f32, Vec<u32>)>,
    /// Whether a running beam can still beat the finished ones.
    improvable: bool,
}

/// What transformers adds to a score to rule a candidate out.
const RULED_OUT: f32 = -1.0e9;

impl BeamSearch {
    pub fn new(beams: usize, eos: u32) -> Self {
        // Only the first beam is live at the start: the others are copies.
        let running = (0..beams)
            .map(|b| (Vec::new(), if b == 0 { 0.0 } else { RULED_OUT }))
            .collect();
        Self {
            beams,
            eos,
            running,
            finished: Vec::new(),
            improvable: true,
        }
    }

    /// The tokens running beam `beam` has generated so far.
    pub fn running_tokens(&self, beam: usize) -> &[u32] {
        &self.running[beam].0
    }

    pub fn running_scores(&self) -> Vec<f32> {
        self.running.iter().map(|(_, score)| *score).collect()
    }

    pub fn last_tokens(&self) -> Vec<i64> {
        self.running
            .iter()
            .map(|(tokens, _)| tokens.last().map_or(self.eos as i64, |&t| t as i64))
            .collect()
    }

    /// One step from the `2 × beams` best continuations (`scores`, and
    /// `indices` into beams × vocabulary, best first): the rows of the cache
    /// the new running beams continue, or `None` when the search is over.
    pub fn advance(
        &mut self,
        scores: &[f32],
        indices: &[i64],
        vocab: usize,
        at_limit: bool,
    ) -> Option<Vec<usize>> {
        let candidates: Vec<(usize, Vec<u32>, f32, bool)> = indices
            .iter()
            .zip(scores)
            .map(|(&index, &score)| {
                let (beam, token) = (index as usize / vocab, (index as usize % vocab) as u32);
                let mut tokens = self.running[beam].0.clone();
                tokens.push(token);
                (beam, tokens, score, token == self.eos || at_limit)
            })
            .collect();
        // Finished among the first `beams` candidates: kept by mean score.
        for (_, tokens, score, hit) in candidates.iter().take(self.beams) {
            if *hit && self.improvable {
                let mean = score / tokens.len() as f32;
                self.finished.push((mean, tokens.clone()));
            }
        }
        self.finished
            .sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        self.finished.truncate(self.beams);
        // The best `beams` candidates that go on (finished ones ruled out;
        // the sort is stable, as ties keep the top-k order).
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let penalised = |i: usize| candidates[i].2 + if candidates[i].3 { RULED_OUT } else { 0.0 };
        order.sort_by(|&a, &b| {
            penalised(b)
                .partial_cmp(&penalised(a))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order.truncate(self.beams);
        let rows = order.iter().map(|&i| candidates[i].0).collect();
        self.running = order
            .iter()
            .map(|&i| (candidates[i].1.clone(), penalised(i)))
            .collect();
        // Can the best running beam, at its length, still beat the worst
        // finished one? (transformers' heuristic without early stopping)
        if self.finished.len() == self.beams {
            let length = self.running[0].0.len() as f32;
            let worst = self.finished[self.beams - 1].0;
            self.improvable &= self.running[0].1 / length > worst;
        }
        let all_hit = candidates.iter().all(|c| c.3);
        (self.improvable && !all_hit).then_some(rows)
    }

    /// The best finished hypothesis: its score and its tokens without
    /// `<|endoftext|>` (the best running beam's if none finished).
    pub fn best(self) -> (f32, Vec<u32>) {
        let (score, mut tokens) = self.finished.into_iter().next().unwrap_or_else(|| {
            let (tokens, score) = self.running[0].clone();
            (score / tokens.len().max(1) as f32, tokens)
        });
        while tokens.last() == Some(&self.eos) {
            tokens.pop();
        }
        (score, tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The spec written as a full sort: descending, ties by index, NaN last.
    fn sorted(scores: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        let key = |i: usize| {
            if scores[i].is_nan() {
                f32::NEG_INFINITY
            } else {
                scores[i]
            }
        };
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        order.truncate(k);
        (
            order.iter().map(|&i| scores[i]).collect(),
            order.iter().map(|&i| i as i64).collect(),
        )
    }

    #[test]
    fn top_k_agrees_with_a_full_sort_on_ties_infinities_and_nan() {
        let mut rng = StdRng::seed_from_u64(7);
        for trial in 0..200 {
            let len = rng.random_range(0..60);
            let scores: Vec<f32> = (0..len)
                .map(|_| match rng.random_range(0..10) {
                    0 => f32::NEG_INFINITY,
                    1 => f32::NAN,
                    // Few distinct values: many ties.
                    _ => rng.random_range(-3..3) as f32,
                })
                .collect();
            let k = rng.random_range(0..12);
            let (values, indices) = top_k(&scores, k);
            let (want_values, want_indices) = sorted(&scores, k);
            assert_eq!(indices, want_indices, "trial {trial}: {scores:?}, k {k}");
            assert_eq!(values.len(), want_values.len());
            for (got, want) in values.iter().zip(&want_values) {
                assert!(got == want || (got.is_nan() && want.is_nan()));
            }
        }
    }
}
