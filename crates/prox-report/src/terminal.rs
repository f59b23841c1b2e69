//! The diff of one document for a terminal: ANSI styles for colour, and markers that read
//! without it (`-` before a removed line, `[-source-]{+target+}` for a replacement), so the
//! caller may strip the styles when the output is not a terminal.

use std::io::{self, Write};

use anstyle::{AnsiColor, Effects, Style};

use crate::html::verdict_note;
use crate::report::SampledDocument;
use crate::run::FailureRow;

const HEADING: Style = Style::new().effects(Effects::BOLD);
const MUTED: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::BrightBlack)));
const REMOVED: Style = Style::new()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)))
    .effects(Effects::STRIKETHROUGH);
const SOURCE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
const TARGET: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
const WARNING: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));

/// Writes a sampled document (its row, diff and programs) with ANSI styles.
pub fn write_document(out: &mut impl Write, document: &SampledDocument) -> io::Result<()> {
    let row = &document.row;
    writeln!(
        out,
        "{HEADING}{}{HEADING:#}  {}",
        printable(&row.id),
        row.outcome.label()
    )?;
    writeln!(out, "{MUTED}{}{MUTED:#}", printable(&row.location))?;
    let ratio = row
        .kept_word_ratio()
        .map(|r| format!(" ({r:.2})"))
        .unwrap_or_default();
    write!(
        out,
        "words {} → {}{ratio}",
        row.words_before, row.words_after
    )?;
    if let Some(diff) = &document.diff {
        write!(
            out,
            " · {} lines removed · {} normalizations · {} program errors",
            diff.outcome.lines_removed,
            diff.outcome.normalizations,
            diff.outcome.errors.len()
        )?;
    }
    writeln!(out)?;
    if let Some(note) = verdict_note(document) {
        writeln!(out, "{WARNING}{note}{WARNING:#}")?;
    }
    for disagreement in &document.disagreements {
        writeln!(out, "{WARNING}warning: {disagreement}{WARNING:#}")?;
    }

    writeln!(out)?;
    match &document.diff {
        Some(diff) => {
            writeln!(
                out,
                "{HEADING}text as the chunk-stage model saw it{HEADING:#}"
            )?;
            for line in &diff.lines {
                if let Some(by) = line.removed_by {
                    writeln!(
                        out,
                        "{MUTED}{}{MUTED:#} - {REMOVED}{}{REMOVED:#}  {MUTED}(removed by program line {by}){MUTED:#}",
                        line.label(),
                        printable(&line.before())
                    )?;
                    continue;
                }
                write!(out, "{MUTED}{}{MUTED:#}   ", line.label())?;
                for segment in &line.segments {
                    if segment.is_changed() {
                        write!(
                            out,
                            "{SOURCE}[-{}-]{SOURCE:#}{TARGET}{{+{}+}}{TARGET:#}",
                            printable(&segment.before),
                            printable(&segment.after)
                        )?;
                    } else {
                        write!(out, "{}", printable(&segment.before))?;
                    }
                }
                writeln!(out)?;
            }
        }
        None => {
            writeln!(out, "{HEADING}text{HEADING:#}")?;
            let text = row.shown_text();
            for (index, line) in text.split('\n').enumerate() {
                writeln!(out, "{MUTED}[{index:03}]{MUTED:#}   {}", printable(line))?;
            }
        }
    }
    if let Some(program) = &row.doc_program {
        writeln!(out)?;
        writeln!(out, "{HEADING}document program{HEADING:#}")?;
        for line in program.split('\n') {
            writeln!(out, "  {}", printable(line))?;
        }
    }
    if let Some(diff) = &document.diff {
        writeln!(out)?;
        writeln!(out, "{HEADING}chunk program{HEADING:#}")?;
        for line in &diff.program {
            write!(
                out,
                "{MUTED}{:>4}{MUTED:#} {}",
                line.number,
                printable(&line.text)
            )?;
            for note in &line.notes {
                write!(out, "  {WARNING}# {}{WARNING:#}", printable(note))?;
            }
            writeln!(out)?;
        }
        let unplaced: Vec<_> = diff
            .outcome
            .errors
            .iter()
            .filter(|e| e.line.is_none())
            .collect();
        for error in unplaced {
            writeln!(
                out,
                "     {WARNING}# {}{WARNING:#}",
                printable(&error.reason)
            )?;
        }
    } else if let Some(program) = &row.chunk_program {
        writeln!(out)?;
        writeln!(out, "{HEADING}chunk program{HEADING:#}")?;
        for line in program.split('\n') {
            writeln!(out, "  {}", printable(line))?;
        }
    }
    Ok(())
}

/// Writes a failure row.
pub fn write_failure(out: &mut impl Write, failure: &FailureRow) -> io::Result<()> {
    let id = failure.id.as_deref().unwrap_or("(no id)");
    writeln!(out, "{HEADING}{}{HEADING:#}  failed", printable(id))?;
    let line = failure.line.map(|l| format!(":{l}")).unwrap_or_default();
    let stage = failure.stage.as_deref().unwrap_or("?");
    writeln!(
        out,
        "{}{line} (stage {})",
        printable(&failure.file),
        printable(stage)
    )?;
    writeln!(out, "{WARNING}{}{WARNING:#}", printable(&failure.error))?;
    if let Some(excerpt) = &failure.excerpt {
        writeln!(out, "{}", printable(excerpt))?;
    }
    Ok(())
}

/// The text with control characters (escape sequences included) written as `\u{1b}`, so
/// that a document cannot move the cursor, recolour or retitle the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(printable("\u{1b}[2Jx\r"), "\\u{1b}[2Jx\\u{d}");
    }
}
