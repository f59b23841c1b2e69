//! The run's record: one JSON line per step (and per validation) in `metrics.jsonl`, flushed
//! as it is written, and the loss curve drawn from it as an SVG.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What one optimiser step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps completed, this one included.
    pub step: u64,
    /// Mean next-token cross-entropy over the step's global batch.
    pub loss: f64,
    /// The learning rate this step used.
    pub lr: f64,
    /// The total gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Training throughput of this step.
    pub tokens_per_s: f64,
    /// Seconds spent training in this process.
    pub elapsed_s: f64,
    /// Seconds left at this process's average pace.
    pub eta_s: f64,
}

/// A line of `metrics.jsonl`: a training step or a validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    Validation { step: u64, val_loss: f64 },
    Step(StepMetrics),
}

impl MetricsLine {
    pub fn step(&self) -> u64 {
        match self {
            MetricsLine::Validation { step, .. } => *step,
            MetricsLine::Step(m) => m.step,
        }
    }
}

/// `metrics.jsonl`, appended line by line.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    lines: Vec<MetricsLine>,
}

impl MetricsLog {
    /// Opens the log, keeping the lines of steps up to `keep_through` (the resumed checkpoint's
    /// step: lines a killed run wrote after it are dropped, as those steps are run again).
    pub fn open(path: &Path, keep_through: u64) -> Result<Self> {
        let mut lines = Vec::new();
        if path.is_file() {
            let read_error = |source| Error::Read {
                path: path.to_path_buf(),
                source,
            };
            let file = std::fs::File::open(path).map_err(read_error)?;
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(read_error)?;
                if line.trim().is_empty() {
                    continue;
                }
                // A line cut short by a kill is dropped, not an error.
                if let Ok(parsed) = serde_json::from_str::<MetricsLine>(&line) {
                    if parsed.step() <= keep_through {
                        lines.push(parsed);
                    }
                }
            }
        }
        let write_error = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        for line in &lines {
            text.push_str(&serde_json::to_string(line).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?);
            text.push('\n');
        }
        std::fs::write(path, text).map_err(write_error)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(write_error)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            lines,
        })
    }

    pub fn append(&mut self, line: MetricsLine) -> Result<()> {
        let mut text = serde_json::to_string(&line).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })?;
        self.lines.push(line);
        Ok(())
    }

    pub fn lines(&self) -> &[MetricsLine] {
        &self.lines
    }
}

/// Draws training loss by step (and validation loss, if any) into an SVG file.
pub fn plot_loss(lines: &[MetricsLine], path: &Path) -> Result<()> {
    use plotters::prelude::*;

    let train: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Step(m) => Some((m.step as f64, m.loss)),
            MetricsLine::Validation { .. } => None,
        })
        .collect();
    let val: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Validation { step, val_loss } => Some((*step as f64, *val_loss)),
            MetricsLine::Step(_) => None,
        })
        .collect();
    let points = || train.iter().chain(&val);
    let max_step = points().map(|p| p.0).fold(1.0, f64::max);
    let (mut low, mut high) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if !low.is_finite() || !high.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let pad = ((high - low) * 0.05).max(1e-3);

    let plot_error = |reason: String| Error::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_step, (low - pad)..(high + pad))
            .map_err(|e| plot_error(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("cross-entropy")
            .draw()
            .map_err(|e| plot_error(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
            .map_err(|e| plot_error(e.to_string()))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.iter().copied(), &RED).point_size(3))
                .map_err(|e| plot_error(e.to_string()))?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| plot_error(e.to_string()))?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    let mut file = prox_io::AtomicFile::create(path).map_err(|e| plot_error(e.to_string()))?;
    file.write_all(svg.as_bytes())
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
    file.commit().map_err(|e| plot_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, loss: f64) -> MetricsLine {
        MetricsLine::Step(StepMetrics {
            step,
            loss,
            lr: 1e-3,
            grad_norm: 1.0,
            tokens: step * 10,
            tokens_per_s: 1.0,
            elapsed_s: 1.0,
            eta_s: 0.0,
        })
    }

    #[test]
    fn reopening_keeps_lines_through_the_checkpoint_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        for s in 1..=4 {
            log.append(step(s, 5.0 - s as f64)).unwrap();
        }
        log.append(MetricsLine::Validation {
            step: 2,
            val_loss: 3.5,
        })
        .unwrap();
        drop(log);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\": 5, \"lo");
        std::fs::write(&path, text).unwrap();
        let log = MetricsLog::open(&path, 2).unwrap();
        let steps: Vec<u64> = log.lines().iter().map(MetricsLine::step).collect();
        assert_eq!(steps, [1, 2, 2]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);

        let svg = dir.path().join("loss.svg");
        plot_loss(log.lines(), &svg).unwrap();
        let drawn = std::fs::read_to_string(&svg).unwrap();
        assert!(
            drawn.starts_with("<svg") && drawn.contains("polyline"),
            "{drawn}"
        );
    }
}
