//! `target/bench/summary.svg`: the run on one page. A grid of small multiples — a row per
//! scenario, a column per figure (server CPU per request, throughput where the client did not
//! set the pace, p99, syscalls, allocations, instructions, idle memory) — each panel a dot per
//! server at its median with a whisker over its spread, the value beside it. Every column has
//! one scale (logarithmic where its values span more than a decade), ticks, and for ratios a
//! dashed, labelled 1.0 line (= tokio `current_thread`). Weir's two backends are coloured and
//! banded; the header names the machine, kernel, commit, date and rounds.
//!
//! [`Layout`] places every mark and keeps the box of each value label and each whisker, so a
//! test can prove that no label lands on a whisker and that the page stays within
//! [`MAX_HEIGHT`]: labels go right of their own whisker, into room each panel keeps free.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::idle::{IdleMemory, IdleTimedResult};
use super::report::gbit_per_s;
use super::stats::Interval;
use super::{
    ALLOCS, BASELINE, CPU_PER_REQ, Counted, Metric, P99, Runs, SERVERS, SYSCALLS, Scenario,
    figures, paired, server_bound_throughput,
};

/// The page is never taller than this; more scenarios wrap into a second block of columns.
pub(super) const MAX_HEIGHT: f64 = 1_600.0;

const MARGIN: f64 = 16.0;
/// The server names, left of each block.
const NAMES_WIDTH: f64 = 92.0;
const PANEL_WIDTH: f64 = 196.0;
/// Kept free at the right of every plot, so a label right of the largest whisker still fits.
const LABEL_ROOM: f64 = 38.0;
const HEADER_HEIGHT: f64 = 128.0;
/// A row's title line above its server lines, and its tick labels below them.
const ROW_TITLE: f64 = 16.0;
const ROW_TICKS: f64 = 14.0;
const ROW_GAP: f64 = 8.0;
const MIN_PITCH: f64 = 9.0;
const MAX_PITCH: f64 = 14.0;
/// A whisker's (and its dot's) half height.
const WHISKER_HALF: f64 = 3.0;

/// Colours: Weir's two backends stand out, every other server is grey.
fn colour(server: &str) -> &'static str {
    match server {
        "weir-uring" => "#d95f02",
        "weir-poll" => "#1f78b4",
        _ => "#555555",
    }
}

fn band(server: &str) -> Option<&'static str> {
    match server {
        "weir-uring" => Some("#fdebdc"),
        "weir-poll" => Some("#e1eef8"),
        _ => None,
    }
}

/// What a column's values are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A ratio against tokio `current_thread`: the column gets a 1.0 line.
    Ratio,
    /// A count per request or per connection.
    Count,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    title: &'static str,
    subtitle: &'static str,
    kind: Kind,
}

const COLUMNS: [Column; 7] = [
    Column {
        title: "server CPU / request",
        subtitle: "ratio vs tokio-ct · lower is better",
        kind: Kind::Ratio,
    },
    Column {
        title: "throughput, not client-bound",
        subtitle: "ratio vs tokio-ct · higher is better",
        kind: Kind::Ratio,
    },
    Column {
        title: "p99 latency",
        subtitle: "ratio vs tokio-ct · lower is better",
        kind: Kind::Ratio,
    },
    Column {
        title: "syscalls / request",
        subtitle: "count (perf) · lower is better",
        kind: Kind::Count,
    },
    Column {
        title: "allocations / request",
        subtitle: "count · lower is better",
        kind: Kind::Count,
    },
    Column {
        title: "user instructions / request",
        subtitle: "ratio vs tokio-ct (callgrind)",
        kind: Kind::Ratio,
    },
    Column {
        title: "idle memory / connection",
        subtitle: "bytes · lower is better",
        kind: Kind::Count,
    },
];

/// One panel's values, one per server in [`SERVERS`] order: the median and spread, or why
/// there is none. `None` for the whole panel: that figure is not measured in that scenario.
type Panel = Option<Vec<(&'static str, Result<Interval, String>)>>;

#[derive(Debug, Clone)]
struct Row {
    title: String,
    /// One per column of [`COLUMNS`].
    panels: Vec<Panel>,
}

/// The chart's data, gathered from a run.
#[derive(Debug, Clone)]
pub(super) struct Chart {
    header: Vec<String>,
    rows: Vec<Row>,
}

/// A panel of `value`s per server, or `None` if no server has a figure or a reason.
fn panel(value: impl Fn(&'static str) -> Option<Result<Interval, String>>) -> Panel {
    let points: Vec<_> = SERVERS
        .iter()
        .map(|server| {
            (
                *server,
                value(server).unwrap_or_else(|| Err("n/a".to_string())),
            )
        })
        .collect();
    // A panel where every server says why it has no figure (all client-bound, say) still shows
    // why; only a panel with nothing but "n/a" is left as not measured.
    points
        .iter()
        .any(|(_, p)| p.as_ref().map_or_else(|why| why != "n/a", |_| true))
        .then_some(points)
}

/// The spread of `server`'s own `metric` over the rounds.
fn spread(runs: &Runs, server: &str, metric: Metric) -> Option<Result<Interval, String>> {
    let list = runs.get(server)?;
    let values: Vec<f64> = figures(list, metric).into_iter().flatten().collect();
    Some(Interval::of(&values).ok_or_else(|| "n/a".to_string()))
}

/// A bulk row's title ends with each server's median bandwidth: ` · Gbit/s: weir-uring 4.1,
/// weir-poll 4.6, ...` (`n/a` where a server has none; servers that sat out are left out).
fn bandwidths(scenario: &Scenario, runs: &Runs) -> String {
    let parts: Vec<String> = SERVERS
        .iter()
        .filter(|server| !scenario.mode.skips(server))
        .map(|server| match gbit_per_s(scenario, runs, server) {
            Ok(gbits) => format!("{server} {gbits:.1}"),
            Err(_) => format!("{server} n/a"),
        })
        .collect();
    format!(" · Gbit/s: {}", parts.join(", "))
}

impl Chart {
    pub(super) fn from_run(
        header: &[String],
        scenarios: &[&Scenario],
        results: &BTreeMap<&str, Runs>,
        counted: &Result<Counted, String>,
        idle_memory: Option<&IdleMemory>,
        idle_timed: &[IdleTimedResult],
    ) -> Chart {
        let mut rows = Vec::new();
        for scenario in scenarios {
            let Some(runs) = results.get(scenario.name) else {
                continue;
            };
            let sat_out = |server: &str| scenario.mode.skips(server);
            let ratio = |metric: Metric| {
                panel(|server| {
                    if sat_out(server) {
                        return Some(Err("sat out".to_string()));
                    }
                    Some(paired(runs, server, BASELINE, metric).ok_or_else(|| "n/a".to_string()))
                })
            };
            let count = |metric: Metric| {
                panel(|server| {
                    if sat_out(server) {
                        return Some(Err("sat out".to_string()));
                    }
                    spread(runs, server, metric)
                })
            };
            let throughput = panel(|server| {
                if sat_out(server) {
                    return Some(Err("sat out".to_string()));
                }
                Some(
                    server_bound_throughput(runs, server, BASELINE)
                        .ok_or_else(|| "client-bound".to_string()),
                )
            });
            let instructions = counted
                .as_ref()
                .ok()
                .and_then(|table| table.get(scenario.name))
                .and_then(|row| {
                    let base = row.get(BASELINE)?.as_ref().ok().copied()?;
                    panel(|server| {
                        Some(match row.get(server)? {
                            Ok(n) => Interval::of(&[n / base]).ok_or_else(|| "n/a".to_string()),
                            Err(why) => Err(why.clone()),
                        })
                    })
                });
            let mut title = format!("{} — {}", scenario.name, scenario.what);
            if scenario.mode.bulk() {
                title.push_str(&bandwidths(scenario, runs));
            }
            rows.push(Row {
                title,
                panels: vec![
                    ratio(CPU_PER_REQ),
                    throughput,
                    ratio(P99),
                    count(SYSCALLS),
                    count(ALLOCS),
                    instructions,
                    None,
                ],
            });
        }
        if let Some(memory) = idle_memory {
            let mut panels = vec![None; COLUMNS.len()];
            panels[6] = panel(|server| {
                let (_, figure) = memory.figures.iter().find(|(s, _)| *s == server)?;
                Some(match figure {
                    Ok(v) => Interval::of(&[*v]).ok_or_else(|| "n/a".to_string()),
                    Err(_) => Err("failed".to_string()),
                })
            });
            rows.push(Row {
                title: format!("B8 — {}", memory.scenario.what),
                panels,
            });
        }
        for result in idle_timed {
            let mut panels = vec![None; COLUMNS.len()];
            let skips = |server: &str| result.scenario.mode.skips(server);
            panels[0] = panel(|server| {
                if skips(server) {
                    return Some(Err("sat out".to_string()));
                }
                Some(result.cpu_ratio(server).ok_or_else(|| "n/a".to_string()))
            });
            panels[6] = panel(|server| {
                if skips(server) {
                    return Some(Err("sat out".to_string()));
                }
                let values: Vec<f64> = result.samples(server).map(|s| s.bytes_per_conn).collect();
                Some(Interval::of(&values).ok_or_else(|| "n/a".to_string()))
            });
            rows.push(Row {
                title: format!(
                    "{} — {} (CPU while idle)",
                    result.scenario.name, result.scenario.what
                ),
                panels,
            });
        }
        Chart {
            header: header.to_vec(),
            rows,
        }
    }

    pub(super) fn render(&self) -> String {
        Layout::of(self).svg()
    }
}

/// A column's scale, shared by its panels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    low: f64,
    high: f64,
    log: bool,
}

impl Scale {
    /// Covers every value of `column` (and 1.0 for a ratio); logarithmic if they are all
    /// positive and span more than a decade.
    fn of(rows: &[Row], column: usize) -> Scale {
        let mut values: Vec<f64> = rows
            .iter()
            .filter_map(|row| row.panels[column].as_ref())
            .flatten()
            .filter_map(|(_, point)| point.as_ref().ok())
            .flat_map(|i| [i.low, i.median, i.high])
            .filter(|v| v.is_finite())
            .collect();
        if COLUMNS[column].kind == Kind::Ratio {
            values.push(1.0);
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() || !max.is_finite() {
            return Scale {
                low: 0.0,
                high: 1.0,
                log: false,
            };
        }
        if min > 0.0 && max / min > 10.0 {
            return Scale {
                low: 10f64.powf(min.log10().floor()),
                high: 10f64.powf(max.log10().ceil()),
                log: true,
            };
        }
        let step = nice_step(max.max(f64::MIN_POSITIVE) / 4.0);
        Scale {
            low: 0.0,
            high: ((max / step).ceil() * step).max(step),
            log: false,
        }
    }

    /// Where `value` falls between 0 (low) and 1 (high), clamped.
    fn fraction(&self, value: f64) -> f64 {
        let f = if self.log {
            let value = value.max(self.low);
            (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            (value - self.low) / (self.high - self.low)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The tick values: decades (with 2 and 5 when there are few) or a nice linear step.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let decades = (self.high.log10() - self.low.log10()).round() as i32;
            let mut ticks = Vec::new();
            for d in 0..=decades {
                let base = self.low * 10f64.powi(d);
                ticks.push(base);
                if decades <= 2 && d < decades {
                    ticks.extend([2.0 * base, 5.0 * base]);
                }
            }
            ticks
        } else {
            let step = nice_step(self.high / 4.0);
            (0..)
                .map(|i| self.low + f64::from(i) * step)
                .take_while(|v| *v <= self.high * (1.0 + 1e-9))
                .collect()
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A short value label: at most five characters.
fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 10_000.0 {
        format!("{:.0}k", value / 1_000.0)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A tick's label: no trailing zeros after a decimal point (`0.5`, `2`, `100`, `10k`).
fn tick_text(tick: f64) -> String {
    let text = short(tick);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A row title's font size: 11, or smaller so that `title` fits in `width`.
fn title_font(title: &str, width: f64) -> f64 {
    let full = 11.0;
    let needed = text_width(title, full);
    if needed <= width {
        full
    } else {
        full * width / needed
    }
}

/// The width a string of `text` takes at font `size` (a generous estimate for sans-serif).
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.62
}

/// An axis-aligned box.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Box {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Box {
    #[cfg(test)]
    fn overlaps(&self, other: &Box) -> bool {
        self.left < other.right
            && other.left < self.right
            && self.top < other.bottom
            && other.top < self.bottom
    }
}

/// The placed page: SVG elements, and the boxes the layout tests check.
#[derive(Debug)]
struct Layout {
    width: f64,
    height: f64,
    elements: Vec<String>,
    /// Every value label (and `n/a` note) drawn beside a server's line.
    labels: Vec<Box>,
    /// Every whisker and dot.
    whiskers: Vec<Box>,
    /// (row, server) for every server name drawn.
    names: Vec<(usize, &'static str)>,
    /// Every row's title.
    titles: Vec<Box>,
}

impl Layout {
    fn of(chart: &Chart) -> Layout {
        let servers = SERVERS.len() as f64;
        let fixed = ROW_TITLE + ROW_TICKS + ROW_GAP;
        let room = MAX_HEIGHT - HEADER_HEIGHT - MARGIN;
        let rows_per_block = ((room / (fixed + servers * MIN_PITCH)).floor() as usize).max(1);
        let blocks = chart.rows.len().div_ceil(rows_per_block).max(1);
        let rows_in_block = chart.rows.len().div_ceil(blocks).max(1);
        let pitch = ((room / rows_in_block as f64 - fixed) / servers).clamp(MIN_PITCH, MAX_PITCH);
        let row_height = fixed + servers * pitch;
        let block_width = NAMES_WIDTH + PANEL_WIDTH * COLUMNS.len() as f64;
        let width = 2.0 * MARGIN + block_width * blocks as f64;
        let height = HEADER_HEIGHT + row_height * rows_in_block as f64 + MARGIN;
        let scales: Vec<Scale> = (0..COLUMNS.len())
            .map(|c| Scale::of(&chart.rows, c))
            .collect();
        let mut layout = Layout {
            width,
            height,
            elements: Vec::new(),
            labels: Vec::new(),
            whiskers: Vec::new(),
            names: Vec::new(),
            titles: Vec::new(),
        };
        layout.header(chart, &scales, blocks, block_width);
        let font = (pitch - 2.0).clamp(8.0, 11.0);
        for (index, row) in chart.rows.iter().enumerate() {
            let block = index / rows_in_block;
            let x0 = MARGIN + block as f64 * block_width;
            let y0 = HEADER_HEIGHT + (index % rows_in_block) as f64 * row_height;
            layout.row(index, row, &scales, x0, y0, pitch, font);
        }
        layout
    }

    fn text(&mut self, x: f64, y: f64, size: f64, style: &str, text: &str) {
        let text = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        self.elements.push(format!(
            "<text x='{x:.1}' y='{y:.1}' font-size='{size:.1}' {style}>{text}</text>"
        ));
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), style: &str) {
        self.elements.push(format!(
            "<line x1='{x1:.1}' y1='{y1:.1}' x2='{x2:.1}' y2='{y2:.1}' {style}/>"
        ));
    }

    fn header(&mut self, chart: &Chart, scales: &[Scale], blocks: usize, block_width: f64) {
        self.text(
            MARGIN,
            24.0,
            17.0,
            "font-weight='bold'",
            "Weir vs tokio, monoio and the raw floors: the figures that decide",
        );
        let lines = chart.header.clone();
        for (i, line) in lines.iter().enumerate() {
            self.text(MARGIN, 42.0 + 14.0 * i as f64, 11.0, "fill='#333'", line);
        }
        let legend_y = 42.0 + 14.0 * lines.len() as f64 + 2.0;
        let mut x = MARGIN;
        for server in ["weir-uring", "weir-poll"] {
            self.elements.push(format!(
                "<circle cx='{:.1}' cy='{:.1}' r='4' fill='{}'/>",
                x + 4.0,
                legend_y - 4.0,
                colour(server)
            ));
            self.text(x + 12.0, legend_y, 11.0, "font-weight='bold'", server);
            x += 100.0;
        }
        self.text(
            x,
            legend_y,
            11.0,
            "fill='#333'",
            "● median, whisker = spread of the rounds (see above) · dashed line: 1.0 = \
             tokio-ct · log scale where a column says so · sat out: the server cannot run it",
        );
        for block in 0..blocks {
            for (c, column) in COLUMNS.iter().enumerate() {
                let x = MARGIN + block as f64 * block_width + NAMES_WIDTH + PANEL_WIDTH * c as f64;
                self.text(
                    x + 4.0,
                    HEADER_HEIGHT - 22.0,
                    11.0,
                    "font-weight='bold'",
                    column.title,
                );
                let scale = if scales[c].log { " · log" } else { "" };
                self.text(
                    x + 4.0,
                    HEADER_HEIGHT - 9.0,
                    9.5,
                    "fill='#555'",
                    &format!("{}{scale}", column.subtitle),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // reason: one row's geometry, computed by the caller
    fn row(
        &mut self,
        index: usize,
        row: &Row,
        scales: &[Scale],
        x0: f64,
        y0: f64,
        pitch: f64,
        font: f64,
    ) {
        let lines_top = y0 + ROW_TITLE;
        let lines_bottom = lines_top + pitch * SERVERS.len() as f64;
        let row_right = x0 + NAMES_WIDTH + PANEL_WIDTH * COLUMNS.len() as f64;
        self.elements.push(format!(
            "<rect x='{x0:.1}' y='{:.1}' width='{:.1}' height='1' fill='#bbb'/>",
            y0 + 1.0,
            row_right - x0
        ));
        // A title too long for its row gets a smaller font rather than running into the next
        // block.
        let title_size = title_font(&row.title, row_right - x0);
        self.text(x0, y0 + 12.0, title_size, "font-weight='bold'", &row.title);
        self.titles.push(Box {
            left: x0,
            right: x0 + text_width(&row.title, title_size),
            top: y0,
            bottom: y0 + ROW_TITLE,
        });
        for (i, server) in SERVERS.iter().enumerate() {
            let y = lines_top + pitch * (i as f64 + 0.5);
            if let Some(fill) = band(server) {
                self.elements.push(format!(
                    "<rect x='{x0:.1}' y='{:.1}' width='{:.1}' height='{pitch:.1}' fill='{fill}'/>",
                    y - pitch / 2.0,
                    row_right - x0
                ));
            }
            let weight = if band(server).is_some() {
                "font-weight='bold'"
            } else {
                ""
            };
            self.text(
                x0 + 2.0,
                y + font * 0.35,
                font,
                &format!("fill='{}' {weight}", colour(server)),
                server,
            );
            self.names.push((index, server));
        }
        for (c, panel) in row.panels.iter().enumerate() {
            let px = x0 + NAMES_WIDTH + PANEL_WIDTH * c as f64;
            let (left, right) = (px + 6.0, px + PANEL_WIDTH - 6.0 - LABEL_ROOM);
            let scale = scales[c];
            let x_of = |v: f64| left + (right - left) * scale.fraction(v);
            self.elements.push(format!(
                "<rect x='{:.1}' y='{lines_top:.1}' width='{:.1}' height='{:.1}' fill='none' stroke='#ddd'/>",
                px + 2.0,
                PANEL_WIDTH - 4.0,
                lines_bottom - lines_top
            ));
            let Some(points) = panel else {
                self.text(
                    px + PANEL_WIDTH / 2.0,
                    (lines_top + lines_bottom) / 2.0 + 4.0,
                    10.0,
                    "fill='#aaa' text-anchor='middle'",
                    "not measured here",
                );
                continue;
            };
            self.ticks(scale, COLUMNS[c].kind, &x_of, lines_top, lines_bottom);
            for (i, (server, point)) in points.iter().enumerate() {
                let y = lines_top + pitch * (i as f64 + 0.5);
                match point {
                    Ok(interval) => {
                        let (lo, hi, mid) = (
                            x_of(interval.low),
                            x_of(interval.high),
                            x_of(interval.median),
                        );
                        let stroke = format!("stroke='{}' stroke-width='1.3'", colour(server));
                        self.line((lo, y), (hi, y), &stroke);
                        self.line((lo, y - WHISKER_HALF), (lo, y + WHISKER_HALF), &stroke);
                        self.line((hi, y - WHISKER_HALF), (hi, y + WHISKER_HALF), &stroke);
                        self.elements.push(format!(
                            "<circle cx='{mid:.1}' cy='{y:.1}' r='{WHISKER_HALF}' fill='{}'/>",
                            colour(server)
                        ));
                        self.whiskers.push(Box {
                            left: lo.min(mid - WHISKER_HALF) - 0.7,
                            right: hi.max(mid + WHISKER_HALF) + 0.7,
                            top: y - WHISKER_HALF,
                            bottom: y + WHISKER_HALF,
                        });
                        let label = short(interval.median);
                        let x = hi.max(mid + WHISKER_HALF) + 4.0;
                        self.label(x, y, font, colour(server), &label);
                    }
                    Err(why) => self.label(left, y, font, "#999", why),
                }
            }
        }
    }

    /// A label left-aligned at `x`, centred on `y`, and its box.
    fn label(&mut self, x: f64, y: f64, size: f64, fill: &str, text: &str) {
        self.text(x, y + size * 0.35, size, &format!("fill='{fill}'"), text);
        self.labels.push(Box {
            left: x,
            right: x + text_width(text, size),
            top: y - size / 2.0,
            bottom: y + size / 2.0,
        });
    }

    /// Grid lines and tick labels under a panel; the 1.0 line of a ratio column, dashed and
    /// labelled.
    fn ticks(
        &mut self,
        scale: Scale,
        kind: Kind,
        x_of: &dyn Fn(f64) -> f64,
        top: f64,
        bottom: f64,
    ) {
        let mut last_right = f64::NEG_INFINITY;
        for tick in scale.ticks() {
            let x = x_of(tick);
            self.line((x, top), (x, bottom), "stroke='#eee'");
            let one = kind == Kind::Ratio && (tick - 1.0).abs() < 1e-9;
            let text = if one {
                "1.0".to_string()
            } else {
                tick_text(tick)
            };
            let width = text_width(&text, 8.5);
            if one || x - width / 2.0 > last_right + 3.0 {
                let style = if one {
                    "fill='#222' font-weight='bold' text-anchor='middle'"
                } else {
                    "fill='#666' text-anchor='middle'"
                };
                self.text(x, bottom + 10.0, 8.5, style, &text);
                last_right = x + width / 2.0;
            }
        }
        if kind == Kind::Ratio {
            let x = x_of(1.0);
            self.line(
                (x, top),
                (x, bottom),
                "stroke='#222' stroke-dasharray='3,2'",
            );
            if !scale.ticks().iter().any(|t| (t - 1.0).abs() < 1e-9) {
                self.text(
                    x,
                    bottom + 10.0,
                    8.5,
                    "fill='#222' font-weight='bold' text-anchor='middle'",
                    "1.0",
                );
            }
        }
    }

    fn svg(&self) -> String {
        let mut out = format!(
            "<svg xmlns='http://www.w3.org/2000/svg' width='{:.0}' height='{:.0}' \
             font-family='DejaVu Sans, Helvetica, Arial, sans-serif'>\n\
             <rect width='100%' height='100%' fill='white'/>\n",
            self.width, self.height
        );
        for element in &self.elements {
            let _ = writeln!(out, "{element}");
        }
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Spread;

    fn interval(median: f64, low: f64, high: f64) -> Result<Interval, String> {
        Ok(Interval {
            median,
            low,
            high,
            spread: Spread::Range,
            rounds: 5,
        })
    }

    /// `rows` rows with awkward values: whiskers at both ends of their scales, a ratio column
    /// spanning decades, missing figures, panels not measured at all.
    fn chart(rows: usize) -> Chart {
        let rows = (0..rows)
            .map(|r| {
                let panels = (0..COLUMNS.len())
                    .map(|c| {
                        if (r + c) % 5 == 4 {
                            return None;
                        }
                        Some(
                            SERVERS
                                .iter()
                                .enumerate()
                                .map(|(i, server)| {
                                    let spread = 1.0 + i as f64 * 0.3;
                                    let point = match (c, i) {
                                        (_, 3) if r % 2 == 0 => Err("client-bound".to_string()),
                                        (3, _) => interval(0.05 * spread, 0.01, 40.0),
                                        (4, _) => interval(0.0, 0.0, 4.0 * spread),
                                        (6, _) => interval(9_000.0 * spread, 100.0, 12_345.0),
                                        _ => interval(spread, spread * 0.5, spread * 2.0),
                                    };
                                    (*server, point)
                                })
                                .collect(),
                        )
                    })
                    .collect();
                Row {
                    title: format!("B{r} — a scenario"),
                    panels,
                }
            })
            .collect();
        Chart {
            header: vec!["machine · kernel · commit · date".into(), "5 rounds".into()],
            rows,
        }
    }

    #[test]
    fn no_label_overlaps_a_whisker() {
        for rows in [1, 11, 17, 30] {
            let layout = Layout::of(&chart(rows));
            assert!(!layout.labels.is_empty() && !layout.whiskers.is_empty());
            for label in &layout.labels {
                for whisker in &layout.whiskers {
                    assert!(
                        !label.overlaps(whisker),
                        "{rows} rows: label {label:?} overlaps whisker {whisker:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_page_stays_within_its_height_bound_however_many_scenarios() {
        for rows in [1, 11, 17, 30, 60] {
            let layout = Layout::of(&chart(rows));
            assert!(
                layout.height <= MAX_HEIGHT,
                "{rows} rows: {} px",
                layout.height
            );
            assert!(
                layout
                    .svg()
                    .contains(&format!("height='{:.0}'", layout.height))
            );
        }
    }

    #[test]
    fn every_server_is_named_in_every_row_and_labels_stay_in_their_panel() {
        let chart = chart(11);
        let layout = Layout::of(&chart);
        for row in 0..chart.rows.len() {
            for server in SERVERS {
                assert!(
                    layout.names.contains(&(row, server)),
                    "{server} in row {row}"
                );
            }
        }
        let svg = layout.svg();
        for server in SERVERS {
            assert!(svg.matches(&format!(">{server}<")).count() >= chart.rows.len());
        }
        for label in &layout.labels {
            assert!(label.right <= layout.width - MARGIN, "{label:?}");
        }
    }

    #[test]
    fn a_column_spanning_decades_is_logarithmic_with_decade_ticks_and_ratios_include_one() {
        let chart = chart(3);
        let syscalls = Scale::of(&chart.rows, 3);
        assert!(syscalls.log);
        assert_eq!((syscalls.low, syscalls.high), (0.01, 100.0));
        assert!(syscalls.ticks().contains(&1.0));
        let allocations = Scale::of(&chart.rows, 4);
        assert!(!allocations.log, "zero has no place on a log axis");
        assert_eq!(allocations.low, 0.0);
        let cpu = Scale::of(&chart.rows, 0);
        assert!(cpu.low <= 1.0 && cpu.high >= 1.0);
        let svg = Layout::of(&chart).svg();
        assert!(svg.contains(">1.0<"), "the 1.0 line is labelled");
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn a_bulk_row_names_every_server_s_bandwidth_and_no_title_leaves_its_block() {
        let scenario = crate::bench::QUICK_EXTRA
            .iter()
            .find(|s| s.name == "B11-bulk")
            .copied()
            .expect("B11-bulk");
        let sample = |chunks_per_s: f64| {
            Ok(crate::bench::Sample {
                throughput: Ok(chunks_per_s),
                cpu_us_per_req: Ok(10.0),
                syscalls_per_req: Ok(4.0),
                allocs_per_req: Ok(0.0),
                p50_us: Ok(100.0),
                p99_us: Ok(200.0),
                p999_us: Ok(300.0),
                utilisation: Ok(0.9),
                client_bound: false,
            })
        };
        // 10,000 chunks of 64 KiB a second: 5.24 Gbit/s each way.
        let runs: Runs = SERVERS
            .iter()
            .filter(|server| !scenario.mode.skips(server))
            .map(|server| (*server, vec![sample(10_000.0), sample(10_000.0)]))
            .chain([("compio", vec![Err("crashed".to_string())])])
            .collect();
        let results = BTreeMap::from([(scenario.name, runs)]);
        let chart = Chart::from_run(&[], &[&scenario], &results, &Err("none".into()), None, &[]);
        let title = &chart.rows[0].title;
        assert!(title.starts_with("B11-bulk — TCP proxy"), "{title}");
        assert!(title.contains("weir-uring 5.2, weir-poll 5.2"), "{title}");
        assert!(title.contains("compio n/a"), "{title}");
        assert!(!title.contains("uring-raw"), "sat out: {title}");
        let mut long = chart.clone();
        long.rows[0].title = title.repeat(3);
        for chart in [chart, long] {
            let layout = Layout::of(&chart);
            let block_width = NAMES_WIDTH + PANEL_WIDTH * COLUMNS.len() as f64;
            assert_eq!(layout.titles.len(), 1);
            for title in &layout.titles {
                assert!(title.right - title.left <= block_width + 1e-6, "{title:?}");
            }
        }
    }

    #[test]
    fn tick_labels_drop_only_decimal_zeros() {
        assert_eq!(tick_text(100.0), "100");
        assert_eq!(tick_text(0.5), "0.5");
        assert_eq!(tick_text(2.0), "2");
        assert_eq!(tick_text(0.0), "0");
        assert_eq!(tick_text(100_000.0), "100k");
    }

    #[test]
    fn the_header_names_the_run() {
        let svg = Layout::of(&chart(2)).svg();
        assert!(svg.contains("machine · kernel · commit · date"));
        assert!(svg.contains("5 rounds"));
        assert!(svg.contains("not measured here"));
    }
}
