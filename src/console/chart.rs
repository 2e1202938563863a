//! The activity chart: stacked bars of opt-outs, opt-ins and help requests per day, drawn as an
//! SVG on the server (no script, no chart library in the browser), from a typed template that
//! escapes its text like every page.

use askama::Template;

/// The kinds a bar stacks, bottom up, with their CSS class and legend.
pub(super) const KINDS: [(&str, &str, &str); 3] = [
    ("STOP", "stop", "opt-outs"),
    ("START", "start", "opt-ins"),
    ("HELP", "help", "help"),
];

const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
const LEFT: u32 = 48;
const BOTTOM: u32 = 28;
const TOP: u32 = 12;

pub(super) struct Segment {
    pub y: u32,
    pub h: u32,
    pub class: &'static str,
    /// Shown on hover, and read by screen readers.
    pub title: String,
}

pub(super) struct Bar {
    pub x: u32,
    pub w: u32,
    pub segments: Vec<Segment>,
}

pub(super) struct Tick {
    pub y: u32,
    pub label: String,
}

pub(super) struct Label {
    pub x: u32,
    pub text: String,
}

#[derive(Template)]
#[template(path = "chart.svg", escape = "html")]
pub(super) struct Chart {
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub base: u32,
    pub summary: String,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub labels: Vec<Label>,
}

/// A round step for the y axis: 1, 2 or 5 times a power of ten, about four ticks to `max`.
fn step(max: u64) -> u64 {
    let rough = max.div_ceil(4).max(1);
    let mut p = 1;
    while p * 10 <= rough {
        p *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= rough)
        .unwrap_or(10 * p)
}

impl Chart {
    /// The chart of `days` (each `(YYYY-MM-DD, [STOP, START, HELP])`, in order).
    pub(super) fn new(days: &[(String, [u64; 3])]) -> Chart {
        let max = days
            .iter()
            .map(|(_, c)| c.iter().sum::<u64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let step = step(max);
        let top_value = max.div_ceil(step) * step;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let base = HEIGHT - BOTTOM;
        let scale = |v: u64| (v as f64 * f64::from(plot_h) / top_value as f64).round() as u32;
        let n = days.len().max(1) as u32;
        let slot = (WIDTH - LEFT) / n;
        let w = (slot * 4 / 5).max(1);
        let label_every = (n / 8).max(1);
        let mut bars = Vec::new();
        let mut labels = Vec::new();
        for (i, (day, counts)) in days.iter().enumerate() {
            let x = LEFT + i as u32 * slot + (slot - w) / 2;
            let mut y = base;
            let mut segments = Vec::new();
            for (count, (_, class, legend)) in counts.iter().zip(KINDS) {
                let h = scale(*count);
                if *count == 0 {
                    continue;
                }
                y -= h.min(y - TOP);
                segments.push(Segment {
                    y,
                    h: h.max(1),
                    class,
                    title: format!("{day}: {count} {legend}"),
                });
            }
            bars.push(Bar { x, w, segments });
            if (i as u32).is_multiple_of(label_every) {
                labels.push(Label {
                    x: x + w / 2,
                    text: day.get(5..).unwrap_or(day).to_string(),
                });
            }
        }
        let ticks = (0..=top_value / step)
            .map(|k| Tick {
                y: base - scale(k * step),
                label: (k * step).to_string(),
            })
            .collect();
        let total: [u64; 3] = days.iter().fold([0; 3], |mut t, (_, c)| {
            for k in 0..3 {
                t[k] += c[k];
            }
            t
        });
        let summary = format!(
            "{} opt-outs, {} opt-ins and {} help requests over {} days",
            total[0],
            total[1],
            total[2],
            days.len()
        );
        Chart {
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            base,
            summary,
            bars,
            ticks,
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(step(1), 1);
        assert_eq!(step(7), 2);
        assert_eq!(step(40), 10);
        assert_eq!(step(1_234), 500);
    }

    #[test]
    fn bars_stack_in_proportion_and_stay_in_the_plot() {
        let days = vec![
            ("2026-03-01".to_string(), [10, 5, 0]),
            ("2026-03-02".to_string(), [0, 0, 0]),
            ("2026-03-03".to_string(), [20, 0, 1]),
        ];
        let c = Chart::new(&days);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.bars[0].segments.len(), 2);
        assert!(c.bars[1].segments.is_empty());
        let tallest: u32 = c.bars[2].segments.iter().map(|s| s.h).sum();
        let first: u32 = c.bars[0].segments.iter().map(|s| s.h).sum();
        assert!(tallest > first);
        for s in c.bars.iter().flat_map(|b| &b.segments) {
            assert!(s.y >= TOP && s.y + s.h <= c.base + 1);
        }
        let svg = c.render().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("2026-03-03: 20 opt-outs"));
        assert!(svg.contains("30 opt-outs, 5 opt-ins and 1 help requests over 3 days"));
    }
}
