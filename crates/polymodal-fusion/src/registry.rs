//! The registry of the fusion layers a classifier can be built with: the
//! [`FusionKind`] named in configs and on the command line, and the
//! [`FusionLayer`] it builds.
//!
//! Both are generated from the one table in this file (the call of
//! `fusion_registry!`). To add a fusion method (see `docs/fusion.md`): write
//! its layer in its own file, implement [`Fusion`] and [`RegisteredFusion`]
//! for it there, import the layer type below and add one row to the table.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Fusion, Result};

// The layer types the table names.
use crate::{
    AttentionSum, ConcatFusion, ContrastiveAlignment, CrossModalTransformer, FilmFusion,
    GatedFusion, LowRankFusion, SingleStreamTransformer, TensorFusion,
};

/// A fusion layer listed in the registry: how [`FusionKind::layer`] builds it.
///
/// Each layer's own file decides how the model width maps onto its settings
/// (the feature-level layers use a hidden width of `2 × dim`, the
/// attention-based ones work at `dim`).
pub trait RegisteredFusion: Fusion + Sized {
    /// Builds the layer for modalities of widths `dims` (in order) in a model
    /// of width `dim`.
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self>;
}

/// The two families of fusion that are layers of one model (see
/// `docs/fusion.md`; model-level fusion combines separately trained models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionFamily {
    /// Early fusion: per-modality features joined into one representation.
    FeatureLevel,
    /// Joint learning: layers that attend across modalities, or align them.
    Joint,
}

/// Generates [`FusionKind`] and [`FusionLayer`] from the registry table.
///
/// Each row is `Variant = "name", Family, Layer;` with the kind's doc comment
/// above it:
/// - `Variant` names the [`FusionKind`] and the [`FusionLayer`] variants;
/// - `"name"` is the kind's name in configs (serde, TOML) and on the command
///   line ([`FusionKind::name`], `Display`, `FromStr`);
/// - `Family` is a [`FusionFamily`] variant ([`FusionKind::family`]);
/// - `Layer` is the layer type, which implements [`RegisteredFusion`]
///   ([`FusionKind::layer`], [`FusionLayer::fusion`]).
///
/// [`FusionKind::None`] (one modality, no layer) comes first and is not a row.
/// [`FusionKind::ALL`] lists the kinds in the table's order.
macro_rules! fusion_registry {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $family:ident, $layer:ident;
    )+) => {
        /// How the modalities of a classifier (`polymodal::MultimodalClassifier`)
        /// are combined: the feature-level and joint families of
        /// `docs/fusion.md` (model-level fusion combines separately trained
        /// classifiers, see [`crate::WeightedAverage`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum FusionKind {
            /// One modality, no fusion: the head reads its pooled embedding.
            #[serde(rename = "none")]
            None,
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl FusionKind {
            /// Every kind, in documentation order ([`FusionKind::None`] first).
            pub const ALL: [FusionKind; 1 + [$($name),+].len()] =
                [Self::None, $(Self::$variant),+];

            /// The name used in configs and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    Self::None => "none",
                    $(Self::$variant => $name,)+
                }
            }

            /// The family of the kind; `None` for [`FusionKind::None`].
            pub fn family(self) -> Option<FusionFamily> {
                match self {
                    Self::None => None,
                    $(Self::$variant => Some(FusionFamily::$family),)+
                }
            }

            /// The fusion layer of this kind for modalities of widths `dims`
            /// (any encoders' embeddings, in order), working at width `dim`
            /// (feature-level hidden layers are `2 × dim`, see
            /// [`RegisteredFusion`]); `None` for [`FusionKind::None`].
            pub fn layer(
                self,
                dims: Vec<usize>,
                dim: usize,
                device: &Device,
            ) -> Result<Option<FusionLayer>> {
                Ok(Some(match self {
                    Self::None => return Ok(None),
                    $(Self::$variant => {
                        FusionLayer::$variant(<$layer as RegisteredFusion>::build(dims, dim, device)?)
                    })+
                }))
            }
        }

        /// The fusion layer of a classifier, one variant per [`FusionKind`]
        /// but [`FusionKind::None`].
        #[derive(Module, Debug)]
        pub enum FusionLayer {
            $(
                #[doc = concat!("A [`", stringify!($layer), "`] (`", $name, "`).")]
                $variant($layer),
            )+
        }

        impl FusionLayer {
            /// The layer as a [`Fusion`].
            pub fn fusion(&self) -> &dyn Fusion {
                match self {
                    $(Self::$variant(layer) => layer,)+
                }
            }
        }

        /// Every call goes to the layer of the variant.
        impl Fusion for FusionLayer {
            fn output_dim(&self) -> usize {
                self.fusion().output_dim()
            }

            fn fuse(&self, inputs: &[polymodal_core::ModalityEmbeddings]) -> Result<Tensor<2>> {
                self.fusion().fuse(inputs)
            }

            fn auxiliary_loss(
                &self,
                inputs: &[polymodal_core::ModalityEmbeddings],
            ) -> Result<Option<Tensor<1>>> {
                self.fusion().auxiliary_loss(inputs)
            }
        }
    };
}

// The registry: one row per fusion layer, in documentation order.
fusion_registry! {
    /// Feature-level: concatenated pooled embeddings, linear + ReLU.
    Concat = "concat", FeatureLevel, ConcatFusion;
    /// Feature-level: gated multimodal unit (GMU).
    Gated = "gated", FeatureLevel, GatedFusion;
    /// Feature-level: FiLM, the first modality conditioned on the others.
    Film = "film", FeatureLevel, FilmFusion;
    /// Feature-level: tensor fusion (outer product, TFN).
    Tensor = "tensor", FeatureLevel, TensorFusion;
    /// Feature-level: low-rank multimodal fusion (LMF).
    LowRank = "low-rank", FeatureLevel, LowRankFusion;
    /// Feature-level: attention-weighted sum of the modality embeddings.
    AttentionSum = "attention-sum", FeatureLevel, AttentionSum;
    /// Joint: pairwise cross-modal attention (MulT-style).
    CrossModal = "cross-modal", Joint, CrossModalTransformer;
    /// Joint: one Transformer over every modality's tokens.
    SingleStream = "single-stream", Joint, SingleStreamTransformer;
    /// Joint: CLIP-style contrastive alignment, the InfoNCE loss added to the
    /// classification loss; the head reads the aligned embeddings.
    Contrastive = "contrastive", Joint, ContrastiveAlignment;
}

impl FusionKind {
    /// Whether the kind is joint learning (the others are feature-level).
    pub fn is_joint(self) -> bool {
        self.family() == Some(FusionFamily::Joint)
    }
}

impl std::fmt::Display for FusionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FusionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        polymodal_core::registry::parse_name(s, &Self::ALL, Self::name, "fusion")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use crate::{
        AttentionSumConfig, ConcatFusionConfig, ContrastiveAlignmentConfig,
        CrossModalTransformerConfig, FilmFusionConfig, GatedFusionConfig, LowRankFusionConfig,
        SingleStreamTransformerConfig, TensorFusionConfig,
    };
    use polymodal_core::Modality;

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, kind) in FusionKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.name().parse::<FusionKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<FusionKind>(&json).unwrap(), kind);
            assert!(
                !FusionKind::ALL[..i].contains(&kind),
                "{kind:?} is listed twice"
            );
            assert!(
                !FusionKind::ALL[..i].iter().any(|k| k.name() == kind.name()),
                "the name {kind} is used twice"
            );
        }
        let names: Vec<&str> = FusionKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "none",
                "concat",
                "gated",
                "film",
                "tensor",
                "low-rank",
                "attention-sum",
                "cross-modal",
                "single-stream",
                "contrastive",
            ]
        );
        let error = "late".parse::<FusionKind>().unwrap_err().to_string();
        assert!(error.contains("unknown fusion `late`"), "{error}");
        assert!(serde_json::from_str::<FusionKind>("\"late\"").is_err());
    }

    #[test]
    fn families() {
        let joint: Vec<FusionKind> = FusionKind::ALL
            .into_iter()
            .filter(|k| k.is_joint())
            .collect();
        assert_eq!(
            joint,
            [
                FusionKind::CrossModal,
                FusionKind::SingleStream,
                FusionKind::Contrastive
            ]
        );
        assert_eq!(FusionKind::None.family(), None);
        assert_eq!(
            FusionKind::Concat.family(),
            Some(FusionFamily::FeatureLevel)
        );
    }

    /// Every kind builds, with the output width its configuration gives for
    /// the widths `layer` is documented to use (hidden `2 × dim` or `dim`),
    /// and only the contrastive layer has an auxiliary loss.
    #[test]
    fn layer_builds_every_kind() {
        let device = Device::flex();
        let dims = vec![8, 6];
        let dim = 4;
        let hidden = 2 * dim;
        let expected = |kind: FusionKind| -> Option<usize> {
            let dims = dims.clone();
            Some(match kind {
                FusionKind::None => return None,
                FusionKind::Concat => ConcatFusionConfig::new(dims).with_hidden(hidden).hidden,
                FusionKind::Gated => GatedFusionConfig::new(dims).with_hidden(hidden).hidden,
                FusionKind::Film => FilmFusionConfig::new(dims).with_hidden(hidden).hidden,
                FusionKind::Tensor => TensorFusionConfig::new(dims).with_hidden(hidden).hidden,
                FusionKind::LowRank => LowRankFusionConfig::new(dims).with_hidden(hidden).hidden,
                FusionKind::AttentionSum => AttentionSumConfig::new(dims).with_dim(dim).dim,
                FusionKind::CrossModal => CrossModalTransformerConfig::new(dims)
                    .with_dim(dim)
                    .output_dim(),
                FusionKind::SingleStream => {
                    SingleStreamTransformerConfig::new(dims).with_dim(dim).dim
                }
                // The aligned embeddings of every modality, concatenated.
                FusionKind::Contrastive => {
                    let config = ContrastiveAlignmentConfig::new(dims).with_dim(dim);
                    config.dim * config.input_dims.len()
                }
            })
        };
        let inputs = [
            part(Modality::Image, 8, 3, &[true, true, false], &device),
            part(Modality::Audio, 6, 2, &[true, false, true], &device),
        ];
        for kind in FusionKind::ALL {
            let layer = kind.layer(dims.clone(), dim, &device).unwrap();
            let width = layer.as_ref().map(|l| l.fusion().output_dim());
            assert_eq!(width, expected(kind), "{kind}");
            // Only contrastive alignment has a loss of its own: its InfoNCE.
            if let Some(layer) = layer {
                let auxiliary = layer.fusion().auxiliary_loss(&inputs).unwrap();
                match &layer {
                    FusionLayer::Contrastive(f) => {
                        let loss = f.loss(&inputs).unwrap().into_scalar::<f32>();
                        let auxiliary = auxiliary.unwrap().into_scalar::<f32>();
                        assert_eq!(auxiliary, loss);
                    }
                    _ => assert!(auxiliary.is_none(), "{kind}"),
                }
            }
        }
    }

    /// Every registered layer, built as a classifier builds it, passes the
    /// conformance suite (`inputs::testing::conformance`): output shape,
    /// absent samples without influence, wrong inputs refused, gradients to
    /// every modality, and learning the tiny problem. A new row is tested
    /// without a line of its own.
    #[test]
    fn every_kind_passes_the_conformance_suite() {
        for kind in FusionKind::ALL.into_iter().skip(1) {
            eprintln!("conformance of {kind}");
            crate::inputs::testing::conformance(|dims, device| {
                Ok(kind.layer(dims, 8, device)?.expect("a layer"))
            });
        }
    }

    /// Every registered layer refuses widths it cannot be built for: no
    /// modality, or one of width zero.
    #[test]
    fn every_kind_refuses_impossible_widths() {
        let device = Device::flex();
        for kind in FusionKind::ALL.into_iter().skip(1) {
            for dims in [vec![], vec![4, 0], vec![0, 4]] {
                let built = kind.layer(dims.clone(), 8, &device);
                assert!(built.is_err(), "{kind} built for widths {dims:?}");
            }
        }
    }
}
