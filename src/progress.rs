//! The command line's ingestion progress, one bar by chunk across all files (in-process and
//! over HTTP alike); without a terminal (make demo's log, CI), a line every few seconds.
use std::time::{Duration, Instant};

pub struct ChunkProgress {
    bar: indicatif::ProgressBar,
    tty: bool,
    started: Instant,
    last_line: Instant,
}

impl ChunkProgress {
    pub fn new(started: Instant) -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} chunks, {per_sec}, ETA {eta} {msg}",
            )
            .expect("template"),
        );
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if !tty {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Self {
            bar,
            tty,
            started,
            last_line: Instant::now(),
        }
    }

    /// Chunks done of those known so far (the total grows as documents are parsed), and files
    /// finished of all; the last call (all files finished) always prints its line.
    pub fn show(&mut self, done: u64, total: u64, files_done: usize, files: usize) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.set_message(format!("{files_done}/{files} files"));
        if self.tty || (self.last_line.elapsed() < Duration::from_secs(5) && files_done < files) {
            return;
        }
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 && total > done {
            format!(", ETA {:.0} s", (total - done) as f64 / rate)
        } else {
            String::new()
        };
        eprintln!(
            "ingesting: {done}/{total} chunks ({rate:.1} chunks/s{eta}), {files_done}/{files} files done"
        );
        self.last_line = Instant::now();
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
