//! The bookkeeping of transformers' beam search for one window (length
//! penalty 1, no early stopping), kept on the host.

/// The `k` largest of `scores` and their indices, largest first (ties: the
/// lower index first).
pub(crate) fn top_k(scores: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
    let descending = |a: &usize, b: &usize| {
        scores[*b]
            .partial_cmp(&scores[*a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k, descending);
        order.truncate(k);
    }
    order.sort_by(descending);
    (
        order.iter().map(|&i| scores[i]).collect(),
        order.iter().map(|&i| i as i64).collect(),
    )
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
