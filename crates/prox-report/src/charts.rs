//! The report's charts: counts gathered row by row in fixed bins (memory does not grow with
//! the run), drawn as SVG by plotters (its SVG backend only; text is left to the browser's
//! fonts, so no font file is read).

use plotters::prelude::*;
use prox_program::{Call, LineKind, Mode};

use crate::run::DocumentRow;
use crate::Error;

/// Kept-word ratio bins of width 1/20; the last bin holds ratios of 1 and more.
const RATIO_BINS: usize = 21;
/// Calls of one kind in one program: 0..=8, then "9+".
const CALL_BINS: usize = 10;
/// Document length bins: 0 words, then [2^(k-1), 2^k) for k = 1..; the last bin is open.
const LENGTH_BINS: usize = 24;

/// The kinds of program lines counted in "calls per program".
pub const CALL_KINDS: [&str; 4] = ["remove_lines", "normalize", "untouch_doc", "other"];

/// Counts for the charts, gathered one document at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// How chunk programs are read when their calls are counted.
    mode: Mode,
    /// Documents per kept-word-ratio bin.
    pub kept_word_ratio: [u64; RATIO_BINS],
    /// Documents without words (no ratio).
    pub without_words: u64,
    /// `calls[kind][n]`: chunk programs with `n` calls of `CALL_KINDS[kind]` (last bin: more).
    pub calls: [[u64; CALL_BINS]; CALL_KINDS.len()],
    /// Chunk programs counted.
    pub programs: u64,
    /// Documents per length bin, before and after refinement.
    pub length_before: [u64; LENGTH_BINS],
    pub length_after: [u64; LENGTH_BINS],
}

impl Default for ChartData {
    /// For programs read in the reference's (faithful) mode.
    fn default() -> Self {
        Self::new(Mode::Faithful)
    }
}

impl ChartData {
    /// For programs read in `mode`, as the run read them.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            kept_word_ratio: [0; RATIO_BINS],
            without_words: 0,
            calls: [[0; CALL_BINS]; CALL_KINDS.len()],
            programs: 0,
            length_before: [0; LENGTH_BINS],
            length_after: [0; LENGTH_BINS],
        }
    }

    pub fn add(&mut self, row: &DocumentRow) {
        match row.kept_word_ratio() {
            Some(ratio) => {
                // Truncation is the binning; ratios are never negative.
                let bin = ((ratio * 20.0) as usize).min(RATIO_BINS - 1);
                self.kept_word_ratio[bin] += 1;
            }
            None => self.without_words += 1,
        }
        self.length_before[length_bin(row.words_before)] += 1;
        self.length_after[length_bin(row.words_after)] += 1;
        if let Some(program) = &row.chunk_program {
            self.programs += 1;
            for (kind, count) in calls_by_kind(program, self.mode).into_iter().enumerate() {
                self.calls[kind][count.min(CALL_BINS - 1)] += 1;
            }
        }
    }

    /// The three charts as SVG documents: kept-word ratio, calls per program, lengths.
    pub fn render(&self) -> Result<Charts, Error> {
        Ok(Charts {
            kept_word_ratio: self.render_ratio()?,
            calls_per_program: self.render_calls()?,
            document_length: self.render_lengths()?,
        })
    }

    fn render_ratio(&self) -> Result<String, Error> {
        let labels: Vec<String> = (0..RATIO_BINS)
            .map(|bin| match bin {
                20 => "≥1".to_owned(),
                bin => format!("{:.2}", bin as f64 / 20.0),
            })
            .collect();
        bar_chart(
            "kept_word_ratio",
            "Kept-word ratio per document (words after / words before)",
            "kept-word ratio (bin start)",
            "documents",
            &labels,
            &[(
                "documents",
                RGBColor(0x3b, 0x6e, 0xa8),
                &self.kept_word_ratio,
            )],
        )
    }

    fn render_calls(&self) -> Result<String, Error> {
        let labels: Vec<String> = (0..CALL_BINS)
            .map(|n| {
                if n == CALL_BINS - 1 {
                    format!("{n}+")
                } else {
                    n.to_string()
                }
            })
            .collect();
        let colors = [
            RGBColor(0xc0, 0x39, 0x2b),
            RGBColor(0x2e, 0x86, 0x4b),
            RGBColor(0x7f, 0x8c, 0x8d),
            RGBColor(0x8e, 0x44, 0xad),
        ];
        let series: Vec<(&str, RGBColor, &[u64])> = CALL_KINDS
            .iter()
            .zip(colors)
            .zip(&self.calls)
            .map(|((kind, color), counts)| (*kind, color, counts.as_slice()))
            .collect();
        bar_chart(
            "calls_per_program",
            "Calls per chunk program, by kind",
            "calls of the kind in one program",
            "programs",
            &labels,
            &series,
        )
    }

    fn render_lengths(&self) -> Result<String, Error> {
        let used = (0..LENGTH_BINS)
            .rev()
            .find(|&bin| self.length_before[bin] + self.length_after[bin] > 0)
            .map_or(1, |bin| bin + 1);
        let labels: Vec<String> = (0..used)
            .map(|bin| match bin {
                0 => "0".to_owned(),
                bin => format!("{}", 1u64 << (bin - 1)),
            })
            .collect();
        bar_chart(
            "document_length",
            "Document length before and after (words, log scale bins)",
            "words (bin start)",
            "documents",
            &labels,
            &[
                (
                    "before",
                    RGBColor(0x95, 0xa5, 0xa6),
                    &self.length_before[..used],
                ),
                (
                    "after",
                    RGBColor(0x3b, 0x6e, 0xa8),
                    &self.length_after[..used],
                ),
            ],
        )
    }
}

/// The rendered charts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Charts {
    pub kept_word_ratio: String,
    pub calls_per_program: String,
    pub document_length: String,
}

/// 0 for no words, else `k` with `2^(k-1) <= words < 2^k`, the last bin open.
fn length_bin(words: u64) -> usize {
    let bits = (u64::BITS - words.leading_zeros()) as usize;
    bits.min(LENGTH_BINS - 1)
}

/// Calls of each of [`CALL_KINDS`] in a chunk program, read as the executor reads it in `mode`
/// (only `remove_lines` and `normalize` lines run; other lines are counted by their text).
pub fn calls_by_kind(program: &str, mode: Mode) -> [usize; CALL_KINDS.len()] {
    let parsed = prox_program::parse(program, mode);
    let texts: Vec<&str> = program.trim_matches(' ').split('\n').collect();
    let mut counts = [0; CALL_KINDS.len()];
    for line in &parsed.lines {
        let kind = match &line.kind {
            LineKind::Call(Call::RemoveLines { .. } | Call::RemoveAllLines) => 0,
            LineKind::Call(Call::Normalize { .. }) => 1,
            LineKind::Blank | LineKind::Comment => continue,
            _ => {
                let text = texts.get(line.line - 1).map_or("", |text| text.trim());
                if text.is_empty() || text.starts_with('#') || text.starts_with("```") {
                    continue;
                }
                if text.starts_with("untouch_doc") {
                    2
                } else {
                    3
                }
            }
        };
        counts[kind] += 1;
    }
    counts
}

/// A bar chart of counts per category, one bar per series side by side in each category.
fn bar_chart(
    chart: &'static str,
    caption: &str,
    x_description: &str,
    y_description: &str,
    labels: &[String],
    series: &[(&str, RGBColor, &[u64])],
) -> Result<String, Error> {
    let failed = |error: &dyn std::fmt::Display| Error::Chart {
        chart,
        message: error.to_string(),
    };
    let categories = labels.len().max(1);
    let highest = series
        .iter()
        .flat_map(|(_, _, counts)| counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let y_top = highest + highest / 10 + 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let mut plot = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(categories as f64 - 0.5), 0u64..y_top)
            .map_err(|e| failed(&e))?;
        let label_of = |x: &f64| {
            let index = x.round();
            if (x - index).abs() < 1e-6 && index >= 0.0 {
                labels.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        plot.configure_mesh()
            .disable_x_mesh()
            .x_labels(categories + 1)
            .x_label_formatter(&label_of)
            .x_desc(x_description)
            .y_desc(y_description)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| failed(&e))?;
        let width = 0.8 / series.len().max(1) as f64;
        for (position, (name, color, counts)) in series.iter().enumerate() {
            let color = *color;
            let left = -0.4 + position as f64 * width;
            let bars = counts.iter().enumerate().map(move |(category, &count)| {
                let x = category as f64 + left;
                Rectangle::new([(x, 0), (x + width, count)], color.filled())
            });
            let drawn = plot.draw_series(bars).map_err(|e| failed(&e))?;
            if series.len() > 1 {
                drawn.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            }
        }
        if series.len() > 1 {
            draw_legend(&mut plot, SeriesLabelPosition::UpperRight).map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

/// The legend of a chart's labelled series, as every chart of ProX-rs draws it.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    plot: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    plot.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .position(position)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lines_are_counted_by_kind() {
        let program =
            "remove_lines(start=0, end=1)\nnormalize(source_str=\"a\", target_str=\"b\")\n\
                       untouch_doc()\n# a comment\n\nremove_lines(all=True)\nprint(1)";
        assert_eq!(calls_by_kind(program, Mode::Faithful), [2, 1, 1, 1]);
    }

    #[test]
    fn lengths_fall_in_power_of_two_bins() {
        assert_eq!(
            [0, 1, 2, 3, 4, 1023, 1024].map(length_bin),
            [0, 1, 2, 2, 3, 10, 11]
        );
        assert_eq!(length_bin(u64::MAX), LENGTH_BINS - 1);
    }

    #[test]
    fn charts_are_svg_with_their_labels() {
        let data = ChartData::default();
        let charts = data.render().unwrap();
        for svg in [
            &charts.kept_word_ratio,
            &charts.calls_per_program,
            &charts.document_length,
        ] {
            assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("<script"));
        }
        assert!(charts.calls_per_program.contains("normalize"));
    }
}
