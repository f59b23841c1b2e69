//! The checkpoint series library: both folder layouts, step selection, which checkpoints are
//! done, and the CSV and chart gathered from hand-made results files (no model is loaded: a
//! checkpoint evaluated by mistake fails on its empty `config.json`).

use std::path::{Path, PathBuf};

use prox_engine::LoadOptions;
use prox_eval::series::{self, Checkpoint, EvalSeries, Evaluator, Scores, SeriesTable};
use prox_eval::{EvalResults, EvalSettings, Metric, ScoringPath, Silent, Task};
use serde_json::json;

/// A folder that looks like a model (only `config.json` is looked at).
fn model_folder(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("config.json"), "{}").unwrap();
}

fn trainer_state(path: &Path, step: u64, blocks_drawn: u64, seq_len: u64) {
    let state = json!({"step": step, "blocks_drawn": blocks_drawn,
                       "recipe": {"seq_len": seq_len, "micro_batch": 4}, "data": []});
    std::fs::write(path.join("trainer_state.json"), state.to_string()).unwrap();
}

fn steps(checkpoints: &[Checkpoint]) -> Vec<Option<u64>> {
    checkpoints.iter().map(|c| c.step).collect()
}

#[test]
fn billion_token_folders_are_found_in_step_order_and_others_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["10B", "5B", "25B", ".30B.partial", "notes"] {
        model_folder(&dir.path().join(name));
    }
    std::fs::create_dir_all(dir.path().join("40B")).unwrap(); // no config.json: not whole
    let found = series::discover(dir.path()).unwrap();
    assert_eq!(steps(&found), [Some(5), Some(10), Some(25)]);
    assert_eq!(found[0].name, "5B");
    assert_eq!(found[0].path, dir.path().join("5B"));
    assert_eq!(found[2].tokens, Some(25_000_000_000));
    assert!(series::is_series(dir.path()));
}

#[test]
fn train_checkpoints_are_found_from_the_run_folder_with_their_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    for (step, blocks) in [(20u64, 80u64), (10, 40)] {
        let path = checkpoints.join(format!("step-{step:08}"));
        model_folder(&path);
        trainer_state(&path, step, blocks, 128);
    }
    let from_run = series::discover(dir.path()).unwrap();
    assert_eq!(steps(&from_run), [Some(10), Some(20)]);
    assert_eq!(from_run[0].tokens, Some(40 * 128));
    assert_eq!(from_run[1].name, "step-00000020");
    assert_eq!(series::discover(&checkpoints).unwrap(), from_run);
}

#[test]
fn a_model_folder_is_a_series_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("step-00000003");
    model_folder(&model);
    let found = series::discover(&model).unwrap();
    assert_eq!(steps(&found), [Some(3)]);
    assert_eq!(found[0].tokens, None, "no trainer_state.json");
    assert!(!series::is_series(&model));
}

#[test]
fn mixed_layouts_and_empty_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = series::discover(dir.path()).unwrap_err().to_string();
    assert!(error.contains("holds no checkpoints"), "{error}");
    model_folder(&dir.path().join("5B"));
    model_folder(&dir.path().join("step-00000005"));
    let error = series::discover(dir.path()).unwrap_err().to_string();
    assert!(error.contains("mixes"), "{error}");
}

#[test]
fn steps_are_selected_in_series_order_and_a_missing_one_lists_those_there() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["5B", "10B", "25B"] {
        model_folder(&dir.path().join(name));
    }
    let all = series::discover(dir.path()).unwrap();
    assert_eq!(
        steps(&series::select(&all, &[25, 5]).unwrap()),
        [Some(5), Some(25)]
    );
    assert_eq!(series::select(&all, &[]).unwrap(), all);
    let error = series::select(&all, &[10, 7, 9]).unwrap_err().to_string();
    assert_eq!(
        error,
        "no checkpoint for step 7, 9; the steps there are: 5, 10, 25"
    );
}

fn settings() -> EvalSettings {
    let tasks = Task::parse_list("arc:easy,piqa,sciq").unwrap();
    EvalSettings {
        data: PathBuf::from("data"),
        splits: [("arc:easy", "validation"), ("sciq", "validation")]
            .into_iter()
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
            .collect(),
        tasks,
        max_samples: Some(4),
        batch_size: 8,
        max_length: None,
        scoring: ScoringPath::SharedContext,
    }
}

/// A results file as `prox eval` writes it for `settings()`, with these `acc_norm`s (and
/// `acc` = acc_norm / 2).
fn results(acc_norm: [f64; 3]) -> EvalResults {
    let task = |split: &str, prox_split: Option<&str>, value: f64| {
        let mut entry = json!({"split": split, "n_docs": 4, "acc": value / 2.0,
            "acc_stderr": 0.1, "acc_norm": value, "acc_norm_stderr": 0.2, "split_rows": 570});
        if let Some(prox_split) = prox_split {
            entry["prox_split"] = json!(prox_split);
            entry["comparable_with_prox"] = json!(false);
        }
        entry
    };
    serde_json::from_value(json!({
        "model": "m", "data": "data", "max_samples": 4, "max_length": 2048,
        "metrics": {"acc": "loglikelihood_acc", "acc_norm": "loglikelihood_acc_norm_nospace"},
        "tasks": {
            "arc:easy": task("validation", Some("test"), acc_norm[0]),
            "piqa": task("validation", None, acc_norm[1]),
            "sciq": task("validation", Some("test"), acc_norm[2]),
        },
        "prox_average": null,
        "not_on_prox_split": ["arc:easy", "sciq"],
        "seconds": 1.5,
    }))
    .unwrap()
}

/// Two `prox train` checkpoints (steps 5 and 10, 128 tokens a block) and an output folder.
fn train_series(dir: &Path) -> Vec<Checkpoint> {
    for (step, blocks) in [(5u64, 20u64), (10, 40)] {
        let path = dir.join(format!("run/checkpoints/step-{step:08}"));
        model_folder(&path);
        trainer_state(&path, step, blocks, 128);
    }
    series::discover(&dir.join("run")).unwrap()
}

#[test]
fn finished_checkpoints_are_skipped_and_gathered_into_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = train_series(dir.path());
    let out = dir.path().join("out");
    results([0.25, 0.5, 1.0])
        .write(&out.join("step-00000005/results.json"))
        .unwrap();
    results([1.0 / 3.0, 0.75, 0.0])
        .write(&out.join("step-00000010/results.json"))
        .unwrap();
    let (settings, load) = (settings(), LoadOptions::default());
    for (metric, csv) in [
        (
            Metric::AccNorm,
            "model_step,custom|arc:easy|0,custom|piqa|0,lighteval|sciq|0,prox_average,tokens\n\
             5,0.25,0.5,1.0,N/A,2560\n\
             10,0.3333333333333333,0.75,0.0,N/A,5120\n",
        ),
        (
            Metric::Acc,
            "model_step,custom|arc:easy|0,custom|piqa|0,lighteval|sciq|0,prox_average,tokens\n\
             5,0.125,0.25,0.5,N/A,2560\n\
             10,0.16666666666666666,0.375,0.0,N/A,5120\n",
        ),
    ] {
        let mut silent = Silent;
        let mut evaluator = EvalSeries::new(&settings, &load, metric, &mut silent);
        // Both are done: evaluating either would fail to load its empty config.json.
        let table = series::run(&checkpoints, &out, &mut evaluator, &mut series::Silent).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("series.csv")).unwrap(),
            csv
        );
        assert_eq!(table.to_csv(), csv);
    }
}

#[test]
fn a_results_file_cut_short_is_not_done_and_the_checkpoint_is_evaluated_again() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = train_series(dir.path());
    let out = dir.path().join("out");
    let whole = serde_json::to_string_pretty(&results([0.25, 0.5, 1.0])).unwrap();
    let path = out.join("step-00000005/results.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let (settings, load) = (settings(), LoadOptions::default());
    let mut silent = Silent;
    let mut evaluator = EvalSeries::new(&settings, &load, Metric::AccNorm, &mut silent);
    assert_eq!(evaluator.finished(path.parent().unwrap()).unwrap(), None);
    // Not done, so its model is loaded: the stand-in's empty config.json cannot be.
    let error = series::run(&checkpoints[..1], &out, &mut evaluator, &mut series::Silent)
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot load the model"), "{error}");
    assert!(!out.join("series.csv").exists());

    std::fs::write(&path, &whole).unwrap();
    let done = evaluator.finished(path.parent().unwrap()).unwrap();
    assert_eq!(
        done,
        Some(Scores {
            values: vec![Some(0.25), Some(0.5), Some(1.0)],
            average: None
        })
    );
}

#[test]
fn results_made_with_other_settings_stop_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("step-00000005");
    let mut other = results([0.25, 0.5, 1.0]);
    other.max_samples = Some(1000);
    other.write(&out.join("results.json")).unwrap();
    let (settings, load) = (settings(), LoadOptions::default());
    let mut silent = Silent;
    let evaluator = EvalSeries::new(&settings, &load, Metric::AccNorm, &mut silent);
    let error = evaluator.finished(&out).unwrap_err().to_string();
    assert!(error.contains("other settings"), "{error}");
}

#[test]
fn results_files_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let written = results([0.25, 0.5, 1.0]);
    written.write(&path).unwrap();
    assert_eq!(EvalResults::read(&path).unwrap(), written);
    let text = std::fs::read_to_string(&path).unwrap();
    // The file's own key order: tasks in run order, fields as prox eval always wrote them.
    let keys = ["\"arc:easy\"", "\"piqa\"", "\"sciq\""].map(|k| text.find(k).unwrap());
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    let arc = &text[keys[0]..keys[1]];
    let order = [
        "split",
        "prox_split",
        "comparable_with_prox",
        "n_docs",
        "acc",
        "acc_stderr",
    ];
    let at: Vec<usize> = order
        .map(|k| arc.find(&format!("\"{k}\"")).unwrap())
        .to_vec();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{arc}");
}

fn table(rows: Vec<(Checkpoint, Scores)>) -> SeriesTable {
    SeriesTable {
        columns: vec!["gsm8k".into(), "svamp".into()],
        average_column: "avg".into(),
        metric_label: "acc (%)".into(),
        rows,
    }
}

fn checkpoint(name: &str, step: Option<u64>, tokens: Option<u64>) -> Checkpoint {
    Checkpoint {
        name: name.into(),
        path: PathBuf::from(name),
        step,
        tokens,
    }
}

#[test]
fn missing_values_and_unknown_steps_read_as_the_reference_writes_them() {
    let table = table(vec![
        (
            checkpoint("5B", Some(5), Some(5_000_000_000)),
            Scores {
                values: vec![Some(12.5), None],
                average: Some(f64::NAN),
            },
        ),
        (
            checkpoint("final,v2", None, None),
            Scores {
                values: vec![Some(1e-5), Some(100.0)],
                average: Some(50.000005),
            },
        ),
    ]);
    assert_eq!(
        table.to_csv(),
        "model_step,gsm8k,svamp,avg,tokens\n\
         5,12.5,N/A,N/A,5000000000\n\
         \"final,v2\",1e-05,100.0,50.000005,N/A\n"
    );
    // A checkpoint without tokens puts the chart on model_step (its row index for a name).
    assert_eq!(table.x_axis(), ("model_step", vec![5.0, 1.0]));
}

#[test]
fn the_chart_is_well_formed_svg_with_a_point_per_value() {
    let tokens = |n: u64| Some(n * 1_000_000_000);
    let table = table(vec![
        (
            checkpoint("5B", Some(5), tokens(5)),
            Scores {
                values: vec![Some(10.0), None],
                average: Some(10.0),
            },
        ),
        (
            checkpoint("10B", Some(10), tokens(10)),
            Scores {
                values: vec![Some(12.5), Some(20.0)],
                average: Some(16.25),
            },
        ),
        (
            checkpoint("25B", Some(25), tokens(25)),
            Scores {
                values: vec![Some(15.0), Some(30.0)],
                average: Some(22.5),
            },
        ),
    ]);
    let (x_label, x) = table.x_axis();
    assert_eq!((x_label, x), ("training tokens", vec![5e9, 10e9, 25e9]));
    let lines = table.lines();
    let points: Vec<usize> = lines.iter().map(|(_, p)| p.len()).collect();
    assert_eq!(points, [3, 2, 3], "gsm8k, svamp (no value at 5B), avg");
    let chart = prox_report::ScoreChart {
        title: "series",
        x_label,
        y_label: &table.metric_label,
        lines: &lines,
    };
    let svg = chart.to_svg().unwrap();
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<circle").count(), 8, "a marker per value");
    // The data lines are the thick polylines (the axes and ticks are 1 wide).
    let drawn: Vec<usize> = svg
        .split("<polyline")
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap())
        .filter(|tag| !tag.contains("stroke-width=\"1\""))
        .map(|l| {
            l.split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .map(|points| points.split_whitespace().count())
        .collect();
    assert_eq!(drawn, points, "a line per column, through its points");
    for label in ["gsm8k", "svamp", "avg", "training tokens", "10B"] {
        assert!(svg.contains(label), "{label} not in the chart");
    }
    let html = chart.to_html(&table.header(), &table.records()).unwrap();
    assert!(html.contains("<th class=\"num\">svamp</th>"), "{html}");
    assert!(html.contains("<td class=\"num\">N&#x2f;A</td>"), "{html}");
}

/// Every element closed in order, one root `<svg>`, attribute values quoted.
fn assert_well_formed(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = svg.trim();
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("a tag is closed") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                open.pop(),
                Some(name.trim()),
                "</{name}> closes another element"
            );
            continue;
        }
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "<{tag}>: an unquoted value"
        );
        let name = tag
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        if open.is_empty() {
            roots += 1;
            assert_eq!(name, "svg");
        }
        if !tag.ends_with('/') {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
    assert_eq!(roots, 1);
}
