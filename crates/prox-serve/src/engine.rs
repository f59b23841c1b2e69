//! The engine thread: owns the model, gathers queued sequences into batches, decodes them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prox_engine::{GenerateOptions, Llama, RequestError, TextGeneration, TextRequest};
use prox_tokenizer::Tokenizer;
use tokio::sync::oneshot;

use crate::{ServeError, ServeSummary};

/// Why one sequence got no generation.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SequenceError {
    /// The model cannot take this prompt (the client's fault: 400).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The forward pass failed (500).
    #[error("generation failed: {0}")]
    Engine(String),
    /// Queued when the server began shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
}

pub(crate) type SequenceResult = Result<TextGeneration, SequenceError>;

/// One prompt waiting for the engine, and where its answer goes.
pub(crate) struct Sequence {
    pub request: TextRequest,
    pub reply: oneshot::Sender<SequenceResult>,
}

/// The sequences of one HTTP request: queued and counted as one.
pub(crate) type Job = Vec<Sequence>;

pub(crate) struct EngineThread {
    handle: std::thread::JoinHandle<ServeSummary>,
}

impl EngineThread {
    /// Starts the thread; it runs until every sender of the returned queue is dropped.
    pub fn start(
        llama: Llama,
        tokenizer: Arc<Tokenizer>,
        max_queue: usize,
        max_batch: usize,
        batch_wait: Duration,
        shutting_down: Arc<AtomicBool>,
    ) -> std::io::Result<(SyncSender<Job>, EngineThread)> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(max_queue);
        let handle = std::thread::Builder::new()
            .name("prox-serve-engine".to_owned())
            .spawn(move || {
                Batcher {
                    llama,
                    tokenizer,
                    receiver,
                    max_batch,
                    batch_wait,
                    shutting_down,
                    pending: VecDeque::new(),
                    summary: ServeSummary::default(),
                }
                .run()
            })?;
        Ok((sender, EngineThread { handle }))
    }

    pub fn join(self) -> Result<ServeSummary, ServeError> {
        self.handle.join().map_err(|_| ServeError::EnginePanicked)
    }
}

struct Batcher {
    llama: Llama,
    /// Follows each sequence's text for its stop strings, and decodes it.
    tokenizer: Arc<Tokenizer>,
    receiver: Receiver<Job>,
    max_batch: usize,
    batch_wait: Duration,
    shutting_down: Arc<AtomicBool>,
    pending: VecDeque<Sequence>,
    summary: ServeSummary,
}

impl Batcher {
    fn run(mut self) -> ServeSummary {
        loop {
            if self.pending.is_empty() {
                match self.receiver.recv() {
                    Ok(job) => self.pending.extend(job),
                    Err(_) => break,
                }
            }
            self.gather();
            if self.shutting_down.load(Ordering::SeqCst) {
                self.refuse_waiting();
                continue;
            }
            let take = self.pending.len().min(self.max_batch);
            let batch: Vec<Sequence> = self
                .pending
                .drain(..take)
                // A client that went away needs no answer.
                .filter(|sequence| !sequence.reply.is_closed())
                .collect();
            self.decode(batch);
        }
        self.summary
    }

    /// Waits up to `batch_wait` for more sequences, until the batch is full.
    fn gather(&mut self) {
        let deadline = Instant::now() + self.batch_wait;
        while self.pending.len() < self.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.receiver.recv_timeout(left) {
                Ok(job) => self.pending.extend(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Answers every sequence not yet decoded with [`SequenceError::ShuttingDown`].
    fn refuse_waiting(&mut self) {
        let queued: Vec<Sequence> = self.receiver.try_iter().flatten().collect();
        for sequence in self.pending.drain(..).chain(queued) {
            self.summary.refused_at_shutdown += 1;
            // The receiver may be gone: then nobody waits for the answer.
            let _ = sequence.reply.send(Err(SequenceError::ShuttingDown));
        }
    }

    fn decode(&mut self, batch: Vec<Sequence>) {
        if batch.is_empty() {
            return;
        }
        let requests: Vec<TextRequest> = batch.iter().map(|s| s.request.clone()).collect();
        let started = Instant::now();
        let outcome = prox_engine::generate_text(
            &self.llama,
            &self.tokenizer,
            &requests,
            &GenerateOptions::default(),
        );
        self.summary.batches += 1;
        self.summary.sequences += batch.len() as u64;
        match outcome {
            Ok(results) => {
                let generated: usize = results
                    .iter()
                    .map(|r| r.as_ref().map_or(0, |g| g.generation.ids.len()))
                    .sum();
                self.summary.generated_tokens += generated as u64;
                tracing::debug!(
                    sequences = batch.len(),
                    generated,
                    seconds = started.elapsed().as_secs_f64(),
                    "batch decoded"
                );
                for (sequence, result) in batch.into_iter().zip(results) {
                    let _ = sequence.reply.send(result.map_err(SequenceError::from));
                }
            }
            Err(error) => {
                tracing::error!(%error, "generation failed");
                let reason = chain(&error);
                for sequence in batch {
                    let _ = sequence
                        .reply
                        .send(Err(SequenceError::Engine(reason.clone())));
                }
            }
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
