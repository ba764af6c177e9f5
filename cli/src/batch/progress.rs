//! Progress of a batch on stderr: a bar on a terminal, a line every 10 %
//! otherwise (logs, CI).

use std::io::IsTerminal;

/// A progress bar on a terminal, plain lines every 10 % otherwise.
pub enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: u64, next: u64 },
}

pub fn progress(total: u64) -> Progress {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tasks {per_sec} eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    } else {
        Progress::Lines {
            total,
            next: total.div_ceil(10).max(1),
        }
    }
}

impl Progress {
    pub fn tick(&mut self, done: u64, failed: u64) {
        match self {
            Self::Bar(b) => {
                b.set_position(done);
                if failed > 0 {
                    b.set_message(format!("{failed} failed"));
                }
            }
            Self::Lines { total, next } => {
                if done >= *next {
                    eprintln!("progress: {done}/{total} tasks ({failed} failed)");
                    *next = done + total.div_ceil(10).max(1);
                }
            }
        }
    }

    pub fn finish(&self, done: u64, failed: u64) {
        match self {
            Self::Bar(b) => b.finish_and_clear(),
            Self::Lines { total, .. } => eprintln!("done: {done}/{total} tasks ({failed} failed)"),
        }
    }
}
