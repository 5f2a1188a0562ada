use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A kind of input a model can learn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Tokenised text.
    Text,
    /// Still images.
    Image,
    /// Audio (as a waveform or spectrogram).
    Audio,
    /// Video frames.
    Video,
}

impl Modality {
    /// Every modality, in a fixed order.
    pub const ALL: [Modality; 4] = [Self::Text, Self::Image, Self::Audio, Self::Video];

    /// The lower-case name used in manifests, configs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Modality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown modality `{s}` (expected text, image, audio or video)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(m.name().parse::<Modality>().unwrap(), m);
        }
        assert!("smell".parse::<Modality>().is_err());
    }
}
