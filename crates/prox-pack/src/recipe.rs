//! How one document becomes the tokens packed for training, as ProX's `prepare_web` does.

/// How ProX's `prepare_web` turns one document into the tokens it packs: an empty text is
/// skipped; otherwise the text is encoded with special tokens, EOS is appended, and a leading BOS
/// is dropped (the separator that pads chunks is BOS too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub bos: u32,
    pub eos: u32,
}

impl Recipe {
    /// Whether the reference skips this text (only the empty string; whitespace is encoded).
    pub fn skips(text: &str) -> bool {
        text.is_empty()
    }

    /// The packed tokens of a document from the ids of its text.
    pub fn document_tokens(&self, mut ids: Vec<u32>) -> Vec<u32> {
        ids.push(self.eos);
        if ids.first() == Some(&self.bos) {
            ids.remove(0);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_bos_is_dropped_and_eos_appended() {
        let recipe = Recipe { bos: 1, eos: 2 };
        assert_eq!(recipe.document_tokens(vec![1, 5, 1]), [5, 1, 2]);
        assert_eq!(recipe.document_tokens(vec![5, 6]), [5, 6, 2]);
        assert_eq!(recipe.document_tokens(vec![]), [2]);
        assert!(Recipe::skips(""));
        assert!(!Recipe::skips(" "));
    }
}
