//! The annotator's prompts: minijinja templates, built in or read from a folder.
//!
//! A folder given with `--prompts` holds `doc/educational_value.jinja` and
//! `doc/format_quality.jinja` for the document stage, and one `chunk/<noise>.jinja` per noise
//! type for the chunk stage (every `.jinja` file there, in name order). It replaces the built-in
//! templates of the stage being annotated, so adding a noise type is adding one file.
//!
//! Variables: the document stage's templates see `document` (the text); the chunk stage's see
//! `chunk` (the line-numbered chunk, as the refiner sees it), `first_line` and `last_line` (the
//! global line numbers of its first and last line) and `first_label`, `last_label` (the same
//! as written in the brackets, `007`). An unknown variable is an error, not an empty string.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use prox_prompt::Stage;
use sha2::{Digest, Sha256};

use crate::Error;

/// The file stem of the educational-value rubric.
pub const EDUCATIONAL_VALUE: &str = "educational_value";
/// The file stem of the format-quality rubric.
pub const FORMAT_QUALITY: &str = "format_quality";

const BUILTIN_DOC: [(&str, &str); 2] = [
    (
        EDUCATIONAL_VALUE,
        include_str!("../prompts/doc/educational_value.jinja"),
    ),
    (
        FORMAT_QUALITY,
        include_str!("../prompts/doc/format_quality.jinja"),
    ),
];

const BUILTIN_CHUNK: [(&str, &str); 3] = [
    ("footer", include_str!("../prompts/chunk/footer.jinja")),
    ("links", include_str!("../prompts/chunk/links.jinja")),
    (
        "navigation",
        include_str!("../prompts/chunk/navigation.jinja"),
    ),
];

/// One template: its name (the file stem) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub source: String,
}

/// The templates of one stage: for the document stage the two rubrics, educational value
/// first; for the chunk stage one per noise type, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    stage: Stage,
    templates: Vec<Template>,
}

/// What a chunk-stage template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct ChunkView<'a> {
    /// The numbered chunk text, `[000]…` lines joined by `\n`.
    pub numbered: &'a str,
    pub first_line: usize,
    pub last_line: usize,
}

impl Prompts {
    /// The built-in templates of `stage`.
    pub fn builtin(stage: Stage) -> Result<Self, Error> {
        let sources: &[(&str, &str)] = match stage {
            Stage::Doc => &BUILTIN_DOC,
            Stage::Chunk => &BUILTIN_CHUNK,
        };
        Self::new(
            stage,
            sources
                .iter()
                .map(|(name, source)| Template {
                    name: (*name).to_owned(),
                    source: (*source).to_owned(),
                })
                .collect(),
        )
    }

    /// The templates of `stage` from a `--prompts` folder (see the module documentation).
    pub fn from_dir(dir: &Path, stage: Stage) -> Result<Self, Error> {
        let folder_error = |reason: String| Error::PromptFolder {
            path: dir.to_owned(),
            reason,
        };
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| folder_error(format!("cannot read {}: {e}", path.display())))
        };
        let templates =
            match stage {
                Stage::Doc => [EDUCATIONAL_VALUE, FORMAT_QUALITY]
                    .into_iter()
                    .map(|name| {
                        let path = dir.join("doc").join(format!("{name}.jinja"));
                        Ok(Template {
                            name: name.to_owned(),
                            source: read(&path)?,
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()?,
                Stage::Chunk => {
                    let folder = dir.join("chunk");
                    let entries = std::fs::read_dir(&folder).map_err(|e| {
                        folder_error(format!("cannot list {}: {e}", folder.display()))
                    })?;
                    let mut paths = Vec::new();
                    for entry in entries {
                        let path = entry
                            .map_err(|e| {
                                folder_error(format!("cannot list {}: {e}", folder.display()))
                            })?
                            .path();
                        if path.extension().is_some_and(|ext| ext == "jinja") {
                            paths.push(path);
                        }
                    }
                    paths.sort();
                    if paths.is_empty() {
                        return Err(folder_error(format!(
                            "no noise-type templates (*.jinja) in {}",
                            folder.display()
                        )));
                    }
                    paths
                        .iter()
                        .map(|path| {
                            let name = path.file_stem().and_then(|stem| stem.to_str()).ok_or_else(
                                || folder_error(format!("{} is not a UTF-8 name", path.display())),
                            )?;
                            Ok(Template {
                                name: name.to_owned(),
                                source: read(path)?,
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?
                }
            };
        Self::new(stage, templates)
    }

    fn new(stage: Stage, templates: Vec<Template>) -> Result<Self, Error> {
        let env = environment();
        for template in &templates {
            env.template_from_str(&template.source)
                .map_err(|e| template_error(&template.name, &e))?;
        }
        Ok(Self { stage, templates })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The templates, in the order their answers are read.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// A digest of every template's name and text, so that a resumed run refuses other prompts.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for template in &self.templates {
            hash.update(template.name.as_bytes());
            hash.update([0]);
            hash.update(template.source.as_bytes());
            hash.update([0]);
        }
        format!("{:x}", hash.finalize())
    }

    /// Renders a document-stage template for one document.
    pub fn render_doc(&self, template: &Template, document: &str) -> Result<String, Error> {
        render(template, minijinja::context! { document => document })
    }

    /// Renders a chunk-stage template for one chunk.
    pub fn render_chunk(&self, template: &Template, chunk: ChunkView<'_>) -> Result<String, Error> {
        render(
            template,
            minijinja::context! {
                chunk => chunk.numbered,
                first_line => chunk.first_line,
                last_line => chunk.last_line,
                first_label => format!("{:03}", chunk.first_line),
                last_label => format!("{:03}", chunk.last_line),
            },
        )
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable must fail loudly, not send the annotator an empty document.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

fn render(template: &Template, context: minijinja::Value) -> Result<String, Error> {
    let env = environment();
    env.template_from_str(&template.source)
        .and_then(|compiled| compiled.render(context))
        .map_err(|e| template_error(&template.name, &e))
}

fn template_error(name: &str, error: &minijinja::Error) -> Error {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Template {
        name: name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_doc_prompts_are_the_two_rubrics_in_order() {
        let prompts = Prompts::builtin(Stage::Doc).expect("built-in templates compile");
        let names: Vec<_> = prompts
            .templates()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, [EDUCATIONAL_VALUE, FORMAT_QUALITY]);
        let text = prompts
            .render_doc(&prompts.templates()[0], "Rivers carve valleys.")
            .expect("renders");
        assert!(text.contains("<document>\nRivers carve valleys.\n</document>"));
        assert!(text.ends_with("Educational score: <points>"));
    }

    #[test]
    fn builtin_chunk_prompts_show_the_chunk_and_its_line_labels() {
        let prompts = Prompts::builtin(Stage::Chunk).expect("built-in templates compile");
        assert_eq!(prompts.templates().len(), 3);
        for template in prompts.templates() {
            let text = prompts
                .render_chunk(
                    template,
                    ChunkView {
                        numbered: "[007]a\n[008]b",
                        first_line: 7,
                        last_line: 8,
                    },
                )
                .expect("renders");
            assert!(
                text.contains("[007] to\n[008]"),
                "{}: {text}",
                template.name
            );
            assert!(text.ends_with("[007]a\n[008]b"), "{}", template.name);
        }
    }

    #[test]
    fn a_prompt_folder_replaces_the_noise_types_and_adds_one_per_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("chunk")).expect("mkdir");
        std::fs::write(dir.path().join("chunk/ads.jinja"), "Ads in:\n{{ chunk }}").expect("w");
        std::fs::write(dir.path().join("chunk/code.jinja"), "Code in {{ chunk }}").expect("w");
        std::fs::write(dir.path().join("chunk/notes.txt"), "not a template").expect("w");
        let prompts = Prompts::from_dir(dir.path(), Stage::Chunk).expect("loads");
        let names: Vec<_> = prompts
            .templates()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["ads", "code"]);
        assert_ne!(
            prompts.fingerprint(),
            Prompts::builtin(Stage::Chunk)
                .expect("builtin")
                .fingerprint()
        );
    }

    #[test]
    fn a_prompt_folder_without_a_rubric_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("doc")).expect("mkdir");
        std::fs::write(
            dir.path().join("doc/educational_value.jinja"),
            "{{ document }}",
        )
        .expect("w");
        let error = Prompts::from_dir(dir.path(), Stage::Doc).expect_err("format rubric missing");
        assert!(
            error.to_string().contains("format_quality.jinja"),
            "{error}"
        );
    }

    #[test]
    fn a_misspelt_variable_is_an_error_naming_the_template() {
        let prompts = Prompts::new(
            Stage::Doc,
            vec![Template {
                name: "edu".to_owned(),
                source: "{{ documnet }}".to_owned(),
            }],
        )
        .expect("compiles");
        let error = prompts
            .render_doc(&prompts.templates()[0], "text")
            .expect_err("undefined variable");
        assert!(
            error.to_string().starts_with("prompt template edu:"),
            "{error}"
        );
    }
}
