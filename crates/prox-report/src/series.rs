//! The chart of an evaluation over a checkpoint series (`prox eval --steps`): one line per task
//! and one for the average, score against training tokens, as SVG, and as a page in the
//! report's style (its stylesheet and Content-Security-Policy) with the table beside it.
//!
//! The chart is drawn here, beside the report's bar charts, so that every chart of ProX-rs has
//! one look and one SVG backend, and the evaluation crate needs no drawing library.

use plotters::prelude::*;
use serde::Serialize;

use crate::charts::draw_legend;
use crate::Error;

const TEMPLATE: &str = include_str!("../assets/series.html");

/// A line chart of scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChart<'a> {
    pub title: &'a str,
    /// What x is ("training tokens" is written with k, M, B suffixes).
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Name and (x, score) points of each line; the last is drawn darker and thicker (the
    /// average).
    pub lines: &'a [(String, Vec<(f64, f64)>)],
}

impl ScoreChart<'_> {
    /// The chart as an SVG document: a polyline and a circle per point for each line, and a
    /// legend.
    pub fn to_svg(&self) -> Result<String, Error> {
        let failed = |error: &dyn std::fmt::Display| Error::Chart {
            chart: "series",
            message: error.to_string(),
        };
        let points = || self.lines.iter().flat_map(|(_, points)| points.iter());
        let (x_range, y_range) = (
            padded(points().map(|p| p.0), 0.03),
            padded(points().map(|p| p.1), 0.08),
        );
        let in_tokens = self.x_label == "training tokens";
        let x_format = |x: &f64| {
            if in_tokens {
                short_count(*x)
            } else {
                format!("{x:.0}")
            }
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| failed(&e))?;
            let mut plot = ChartBuilder::on(&root)
                .caption(self.title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(60)
                .build_cartesian_2d(x_range, y_range)
                .map_err(|e| failed(&e))?;
            plot.configure_mesh()
                .x_label_formatter(&x_format)
                .x_desc(self.x_label)
                .y_desc(self.y_label)
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| failed(&e))?;
            let last = self.lines.len().saturating_sub(1);
            for (i, (name, points)) in self.lines.iter().enumerate() {
                let (color, width) = if i == last && i > 0 {
                    (BLACK, 3)
                } else {
                    let (r, g, b) = Palette99::pick(i).rgb();
                    (RGBColor(r, g, b), 2)
                };
                plot.draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(width),
                ))
                .map_err(|e| failed(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled())
                });
                plot.draw_series(
                    points
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )
                .map_err(|e| failed(&e))?;
            }
            draw_legend(&mut plot, SeriesLabelPosition::LowerRight).map_err(|e| failed(&e))?;
            root.present().map_err(|e| failed(&e))?;
        }
        Ok(svg)
    }

    /// A self-contained HTML page: the chart, and the table (`header`, then `rows`) under it.
    pub fn to_html(&self, header: &[String], rows: &[Vec<String>]) -> Result<String, Error> {
        #[derive(Serialize)]
        struct Page<'a> {
            csp: String,
            css: &'static str,
            title: &'a str,
            chart: String,
            header: &'a [String],
            rows: &'a [Vec<String>],
        }
        let page = Page {
            csp: crate::html::content_security_policy(),
            css: crate::html::CSS,
            title: self.title,
            chart: self.to_svg()?,
            header,
            rows,
        };
        crate::html::render_page("series.html", TEMPLATE, &page)
    }
}

/// A plotting range over `values`, widened by `margin` of its span on each side (by 1 when
/// the span is empty).
fn padded(values: impl Iterator<Item = f64>, margin: f64) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if low > high {
        return 0.0..1.0;
    }
    let pad = if high > low {
        (high - low) * margin
    } else {
        low.abs().max(1.0) * 0.05
    };
    (low - pad)..(high + pad)
}

/// A count with a k, M or B suffix (1.5B, 300M, 12k).
fn short_count(x: f64) -> String {
    let trim = |v: f64| {
        let text = format!("{v:.1}");
        text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
    };
    match x.abs() {
        a if a >= 1e9 => format!("{}B", trim(x / 1e9)),
        a if a >= 1e6 => format!("{}M", trim(x / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(x / 1e3)),
        _ => format!("{x:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_largest_suffix_that_fits() {
        assert_eq!(short_count(1.5e9), "1.5B");
        assert_eq!(short_count(3e8), "300M");
        assert_eq!(short_count(12_000.0), "12k");
        assert_eq!(short_count(640.0), "640");
    }

    #[test]
    fn an_empty_or_flat_range_is_widened() {
        assert_eq!(padded(std::iter::empty(), 0.1), 0.0..1.0);
        let flat = padded([0.5, 0.5].into_iter(), 0.1);
        assert!(flat.start < 0.5 && flat.end > 0.5);
    }
}
