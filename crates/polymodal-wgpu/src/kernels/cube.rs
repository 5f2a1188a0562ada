//! The wgpu implementations of [`KernelOps`](super::KernelOps): each
//! method launches its CubeCL kernel.

use burn::backend::wgpu::{CubeBackend, CubeTensor};

use super::{FrameShape, LogMelShape, frames_cube, gated, log_mel};

impl super::KernelOps for CubeBackend {
    fn log_mel(
        signal: CubeTensor,
        window: CubeTensor,
        twiddles: CubeTensor,
        dft_cos: CubeTensor,
        dft_sin: CubeTensor,
        filters: CubeTensor,
        bands: CubeTensor,
        shape: LogMelShape,
    ) -> CubeTensor {
        log_mel::launch(
            signal,
            window,
            twiddles,
            (dft_cos, dft_sin),
            (filters, bands),
            shape,
        )
    }

    fn preprocess_frames(
        pixels: CubeTensor,
        horizontal_start: CubeTensor,
        horizontal_len: CubeTensor,
        horizontal_weights: CubeTensor,
        vertical_start: CubeTensor,
        vertical_len: CubeTensor,
        vertical_weights: CubeTensor,
        norm: CubeTensor,
        shape: FrameShape,
    ) -> CubeTensor {
        frames_cube::launch(
            pixels,
            [horizontal_start, horizontal_len, horizontal_weights],
            [vertical_start, vertical_len, vertical_weights],
            norm,
            &shape,
        )
    }

    fn gated_unit(scores: CubeTensor, candidates: CubeTensor, present: CubeTensor) -> CubeTensor {
        gated::forward(scores, candidates, present)
    }

    fn gated_unit_grad_scores(
        scores: CubeTensor,
        candidates: CubeTensor,
        present: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        gated::grad_scores(scores, candidates, present, grad)
    }

    fn gated_unit_grad_candidates(
        scores: CubeTensor,
        candidates: CubeTensor,
        present: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        gated::grad_candidates(scores, candidates, present, grad)
    }
}
