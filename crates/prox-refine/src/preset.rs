//! The refiners ProX released, by domain.

use crate::refiner::Stages;

/// A pair of released refining models: the document stage's and the chunk stage's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// `gair-prox/web-doc-refining-lm` and `gair-prox/web-chunk-refining-lm`.
    #[default]
    Web,
    /// `gair-prox/math-doc-refining-lm` and `gair-prox/math-chunk-refining-lm`.
    Math,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Web, Preset::Math];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Web => "web",
            Preset::Math => "math",
        }
    }

    /// The hub id of the document-stage model.
    pub fn doc_model(self) -> String {
        format!("gair-prox/{}-doc-refining-lm", self.name())
    }

    /// The hub id of the chunk-stage model.
    pub fn chunk_model(self) -> String {
        format!("gair-prox/{}-chunk-refining-lm", self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.name() == name)
            .ok_or_else(|| format!("expected web or math, not {name:?}"))
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The models of a run: the preset's, unless a stage's model is given; `None` for a stage that
/// does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Models {
    pub doc: Option<String>,
    pub chunk: Option<String>,
}

impl Models {
    pub fn new(preset: Preset, doc: Option<&str>, chunk: Option<&str>, stages: Stages) -> Models {
        Models {
            doc: stages
                .doc
                .then(|| doc.map_or_else(|| preset.doc_model(), str::to_owned)),
            chunk: stages
                .chunk
                .then(|| chunk.map_or_else(|| preset.chunk_model(), str::to_owned)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_model_wins_over_the_presets() {
        let both = Stages {
            doc: true,
            chunk: true,
        };
        let models = Models::new(Preset::Math, None, Some("./chunk-lm"), both);
        assert_eq!(
            models.doc.as_deref(),
            Some("gair-prox/math-doc-refining-lm")
        );
        assert_eq!(models.chunk.as_deref(), Some("./chunk-lm"));
        let doc_only = Stages {
            doc: true,
            chunk: false,
        };
        assert_eq!(Models::new(Preset::Web, None, None, doc_only).chunk, None);
        assert_eq!("web".parse::<Preset>(), Ok(Preset::Web));
        assert!("code".parse::<Preset>().is_err());
    }
}
