//! A small writer for the Prometheus text exposition format 0.0.4.

use std::fmt::Write;

/// Builds an exposition: `# HELP` and `# TYPE` once per metric family, then
/// its samples.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: String,
}

/// Formats a sample value: integers without a fraction, special floats as
/// the format spells them.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Writer {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        // HELP text escapes backslash and newline.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn samples(&mut self, name: &str, samples: &[(&str, f64)]) {
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.out, "{name} {}", value(*v));
            } else {
                let _ = writeln!(self.out, "{name}{{{labels}}} {}", value(*v));
            }
        }
    }

    /// A counter family; each sample is (labels without braces, value).
    pub(crate) fn counter(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        self.family(name, help, "counter");
        self.samples(name, samples);
    }

    /// A gauge family.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        self.family(name, help, "gauge");
        self.samples(name, samples);
    }

    /// A histogram from per-bucket (non-cumulative) counts: one per bound,
    /// plus the overflow bucket last.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        self.family(name, help, "histogram");
        let mut cumulative = 0u64;
        for (le, n) in bounds.iter().zip(counts) {
            cumulative += n;
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(self.out, "{name}_sum {}", value(sum));
        let _ = writeln!(self.out, "{name}_count {cumulative}");
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}
