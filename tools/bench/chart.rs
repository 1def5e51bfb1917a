//! The benchmark chart `docs/benchmarks.svg`, drawn with plotters' SVG backend.
//!
//! One 1400×1000 SVG: the title "daemonic benchmarks" with the run's subtitle (machine, kernel,
//! cgroup mode, date), then four panels in a 2×2 grid. In every panel a bar or a point is the
//! median of the measurements and its whisker the spread `lo..hi` that the caller measured (the
//! caller says in the subtitle whether that is min–max or p25–p75). Daemonic's own measurements
//! are drawn in blues (solid lines, round markers), the peers it is compared with in warm colours
//! (dashed lines, square markers).
//!
//! 1. **spawn + wait per child (µs, p50)**, top left: one horizontal bar per way of starting a
//!    child, in the caller's order from the top, on a logarithmic µs axis (the values range from
//!    ~500 µs to ~100 ms), its p50 written beside it; a black diamond marks the p99 when it was
//!    measured.
//! 2. **teardown: family end → N daemons reaped (ms)**, top right: the time from the end of a
//!    family to the moment its N daemons are all reaped, against N; both axes logarithmic.
//! 3. **spawn cost per member as the family grows (µs)**, bottom left: the cost of one spawn
//!    against the number of members alive, logarithmic x; the y axis is linear from 0 unless the
//!    values span more than a factor of 20, then logarithmic (the axis title says which).
//! 4. **footprint: RSS with idle members (MiB)**, bottom right: grouped bars, one group per
//!    measured member count and one bar per process. The counts (e.g. 0, 100, 1000) are
//!    categories, evenly spaced and not to scale: 0 has no place on a log axis, and a linear one
//!    would squeeze 0 and 100 together.
//!
//! A panel without any usable value keeps its frame and title and says "not measured". Values
//! that are NaN or infinite are skipped, as are values ≤ 0 on a logarithmic axis (a spread
//! reaching 0 or below is drawn open-ended, without a cap, to the axis' low end).
//!
//! Text is measured with the TrueType font DejaVu Sans (plotters' `ab_glyph` feature: no system
//! library at build time), read at run time from
//! `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf` (Debian package `fonts-dejavu-core`), or
//! from the file named by the environment variable `DAEMONIC_CHART_FONT`. The SVG names the
//! font family "DejaVu Sans, sans-serif"; viewers draw the text with their own fonts.

use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One measured value: the median and its spread (lo..hi, e.g. min–max or p25–p75 — the caller says which in the panel's note).
#[derive(Clone, Debug)]
pub struct Figure {
    /// The median.
    pub median: f64,
    /// The low end of the spread.
    pub lo: f64,
    /// The high end of the spread.
    pub hi: f64,
}

/// One bar of the spawn panel.
#[derive(Clone, Debug)]
pub struct Bar {
    /// What was measured, e.g. "Python multiprocessing (forkserver)".
    pub label: String,
    /// The p50 latency in µs, with its spread.
    pub p50: Figure,
    /// The p99 latency in µs, when measured.
    pub p99: Option<f64>,
    /// Whether this is one of daemonic's own ways to spawn (drawn in daemonic's colour).
    pub daemonic: bool,
}

/// One line of a panel with a numeric x axis (log scale x); points sorted by x.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend's text for this line.
    pub label: String,
    /// (x, y) points, sorted by x.
    pub points: Vec<(f64, Figure)>,
    /// Whether this is daemonic's own measurement (drawn in daemonic's colours).
    pub daemonic: bool,
}

/// Everything the chart shows.
#[derive(Clone, Debug)]
pub struct Charts {
    /// e.g. "2 cores · Linux 6.18 · hybrid cgroups · 2026-12-04"
    pub subtitle: String,
    /// spawn+wait latency per child, µs (p50 bars with spread whiskers; p99 as a marker when Some)
    pub spawn: Vec<Bar>,
    /// teardown: x = N daemons, y = ms from "the family ends" to "all reaped"
    pub teardown: Vec<Series>,
    /// scaling: x = family size (members alive), y = µs spawn cost per member
    pub scaling: Vec<Series>,
    /// footprint: x = idle members, y = MiB RSS (one series per process, e.g. "daemonic run", "guardian")
    pub footprint: Vec<Series>,
}

/// Draws `charts` into the SVG file `path` (replaced if it exists).
///
/// Fails when the font cannot be read (the error names the file, `DAEMONIC_CHART_FONT` and the
/// Debian package `fonts-dejavu-core`) or `path` cannot be written (the error names it). The SVG
/// is drawn in memory first: a drawing error leaves `path` untouched.
pub fn draw(path: &Path, charts: &Charts) -> Result<(), Box<dyn Error>> {
    register_fonts()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        let centre = WIDTH as i32 / 2;
        header.draw(&Text::new(
            "daemonic benchmarks",
            (centre, 14),
            bold(34.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        if !charts.subtitle.trim().is_empty() {
            let style = font(19.0).color(&MUTED);
            header.draw(&Text::new(
                fit_text(&header, charts.subtitle.trim(), &style, WIDTH - 48)?,
                (centre, 56),
                style.pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        header.draw(&PathElement::new(
            vec![(24, HEADER as i32 - 2), (WIDTH as i32 - 24, HEADER as i32 - 2)],
            RULE.stroke_width(1),
        ))?;
        let panels = body.split_by_breakpoints([LEFT_COLUMN], [(HEIGHT - HEADER) / 2]);
        let panel = |i: usize| panels[i].margin(10, 6, 8, 8);
        spawn_panel(&panel(0), &charts.spawn)?;
        line_panel(
            &panel(1),
            &LinePanel {
                title: "teardown: family end → N daemons reaped (ms)",
                x_desc: "N daemons (log scale)",
                y_desc: "ms until all are reaped",
                y_scale: YScale::Log,
            },
            &charts.teardown,
        )?;
        line_panel(
            &panel(2),
            &LinePanel {
                title: "spawn cost per member as the family grows (µs)",
                x_desc: "family size: members alive (log scale)",
                y_desc: "µs per member",
                y_scale: YScale::Auto,
            },
            &charts.scaling,
        )?;
        footprint_panel(&panel(3), &charts.footprint)?;
        root.present()?;
    }
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Layout, colours and fonts.

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;
/// Height of the title and subtitle.
const HEADER: u32 = 88;
/// Width of the left column: the spawn panel needs room for its labels.
const LEFT_COLUMN: u32 = 760;

const MARGIN_LEFT: u32 = 8;
const MARGIN_RIGHT: u32 = 18;
const MARGIN_TOP: u32 = 6;
const X_LABEL_AREA: u32 = 48;
const Y_LABEL_AREA: u32 = 72;
/// Height of a panel's title with its gap, as plotters lays it out (for tick density only).
const CAPTION_HEIGHT: u32 = 32;
/// Least distance between the centres of two tick labels, in pixels.
const TICK_GAP: f64 = 58.0;

const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x5f, 0x5f, 0x5f);
const AXIS: RGBColor = RGBColor(0x88, 0x88, 0x88);
const GRID: RGBColor = RGBColor(0xdc, 0xdc, 0xdc);
const GRID_LIGHT: RGBColor = RGBColor(0xf0, 0xf0, 0xf0);
const RULE: RGBColor = RGBColor(0xcc, 0xcc, 0xcc);
const WHISKER: RGBColor = RGBColor(0x33, 0x33, 0x33);
const P99: RGBColor = RGBColor(0x11, 0x11, 0x11);
/// The spawn panel's bars.
const DAEMONIC_BAR: RGBColor = RGBColor(0x2f, 0x6f, 0xba);
const PEER_BAR: RGBColor = RGBColor(0xf0, 0x9a, 0x4a);
/// Lines and footprint bars, taken in order: daemonic's in blues, peers' in warm colours.
const DAEMONIC_COLOURS: [RGBColor; 4] =
    [RGBColor(0x1f, 0x5f, 0xa8), RGBColor(0x4c, 0xa8, 0xe0), RGBColor(0x1a, 0x93, 0x8a), RGBColor(0x6a, 0x4c, 0x93)];
const PEER_COLOURS: [RGBColor; 5] = [
    RGBColor(0xe0, 0x6c, 0x12),
    RGBColor(0xc0, 0x32, 0x2b),
    RGBColor(0x8c, 0x60, 0x3c),
    RGBColor(0x80, 0x80, 0x80),
    RGBColor(0xb8, 0x9a, 0x00),
];

/// The font family named in the SVG, and under which the font is registered for measuring.
const FAMILY: &str = "DejaVu Sans, sans-serif";
const FONT_ENV: &str = "DAEMONIC_CHART_FONT";
const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const BOLD_FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// Reads the font once per process and registers it with plotters, which needs it to measure
/// text (labels, legends, label areas).
fn register_fonts() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let (regular, bold, origin, remedy) = match std::env::var_os(FONT_ENV) {
                Some(path) if !path.is_empty() => (
                    PathBuf::from(path),
                    None,
                    format!(" (from {FONT_ENV})"),
                    format!("unset {FONT_ENV} to use {FONT_FILE} (Debian package fonts-dejavu-core)"),
                ),
                _ => (
                    PathBuf::from(FONT_FILE),
                    Some(PathBuf::from(BOLD_FONT_FILE)),
                    String::new(),
                    format!("install the Debian package fonts-dejavu-core, or set {FONT_ENV} to another TrueType font"),
                ),
            };
            let bytes = std::fs::read(&regular)
                .map_err(|e| format!("cannot read the chart's font {}{origin}: {e}; {remedy}", regular.display()))?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            for name in [FAMILY, "sans-serif"] {
                plotters::style::register_font(name, FontStyle::Normal, bytes).map_err(|_| {
                    format!("the chart's font {}{origin} is not a TrueType or OpenType font", regular.display())
                })?;
            }
            // Bold text (the titles) is measured with the regular font when there is no bold one.
            if let Some(bytes) = bold.and_then(|path| std::fs::read(path).ok()) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                for name in [FAMILY, "sans-serif"] {
                    let _ = plotters::style::register_font(name, FontStyle::Bold, bytes);
                }
            }
            Ok(())
        })
        .clone()
}

/// A text style; `size` is plotters' (the SVG's font size is `size / 1.24` pixels).
fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)).color(&INK)
}

fn bold(size: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Bold)).color(&INK)
}

fn caption_style() -> TextStyle<'static> {
    bold(21.0)
}

fn label_style() -> TextStyle<'static> {
    font(15.0).color(&MUTED)
}

fn left(style: TextStyle<'static>) -> TextStyle<'static> {
    style.pos(Pos::new(HPos::Left, VPos::Center))
}

type Res<T = ()> = Result<T, Box<dyn Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Coord = Cartesian2d<Ticked, Ticked>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Coord>;

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

// ---------------------------------------------------------------------------------------------
// Axes. Every axis is linear in plotters' eyes: a logarithmic one holds log10 of the values, so
// that all panels share one coordinate type and the ticks are exactly the ones chosen here.

#[derive(Clone, Debug)]
struct Axis {
    log: bool,
    /// The range, in data units.
    lo: f64,
    hi: f64,
    /// Labelled ticks with grid lines, in data units.
    ticks: Vec<f64>,
    /// Grid lines without a label, in data units.
    minor: Vec<f64>,
}

impl Axis {
    /// The plotting coordinate of a data value.
    fn t(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// The data value of a plotting coordinate.
    fn inv(&self, t: f64) -> f64 {
        if self.log { 10f64.powf(t) } else { t }
    }

    /// The plotting coordinate of `v` brought into the range (≤ 0 on a log axis: the low end).
    fn clamp(&self, v: f64) -> f64 {
        let v = if self.log && v <= 0.0 { self.lo } else { v };
        self.t(v.clamp(self.lo, self.hi))
    }

    /// Whether `v` lies inside the range (a clamped end is drawn without a cap).
    fn inside(&self, v: f64) -> bool {
        v.is_finite() && v >= self.lo && v <= self.hi && (!self.log || v > 0.0)
    }

    fn coord(&self) -> Ticked {
        Ticked {
            range: self.t(self.lo)..self.t(self.hi),
            ticks: self.ticks.iter().map(|&v| self.t(v)).collect(),
            minor: self.minor.iter().map(|&v| self.t(v)).collect(),
        }
    }

    /// An axis without ticks (a category axis sets its own).
    fn plain(lo: f64, hi: f64) -> Axis {
        Axis { log: false, lo, hi, ticks: Vec::new(), minor: Vec::new() }
    }

    /// A logarithmic axis from `lo` to `hi` (both > 0) over `px` pixels. Labelled ticks at
    /// `preferred` values when there are a few and they are far enough apart (e.g. the measured
    /// N), otherwise at 1, 2, 5 or 1, 3 or 1 × 10^k, whatever fits.
    fn log(lo: f64, hi: f64, px: f64, preferred: &[f64]) -> Axis {
        let decades = (hi / lo).log10().max(1e-9);
        let px_per_decade = px / decades;
        let spaced = |values: &[f64]| values.windows(2).all(|w| (w[1] / w[0]).log10() * px_per_decade >= TICK_GAP);
        let in_range = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
        let decade_values = |mantissas: &[f64], step: i32| {
            let mut values = Vec::new();
            let mut e = lo.log10().floor() as i32 - 1;
            while e <= hi.log10().ceil() as i32 + 1 {
                for &m in mantissas {
                    let v = round_sig(m * 10f64.powi(e), 6);
                    if in_range(v) {
                        values.push(v);
                    }
                }
                e += step;
            }
            values
        };
        let mut preferred: Vec<f64> = preferred.iter().copied().filter(|&v| in_range(v)).collect();
        preferred.sort_by(f64::total_cmp);
        preferred.dedup();
        let ticks = if (2..=10).contains(&preferred.len()) && spaced(&preferred) {
            preferred
        } else {
            let sets: [(&[f64], f64); 4] = [
                (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], (9f64 / 8.0).log10()),
                (&[1.0, 2.0, 5.0], 2f64.log10()),
                (&[1.0, 3.0], 3f64.log10()),
                (&[1.0], 1.0),
            ];
            match sets.iter().find(|(_, gap)| gap * px_per_decade >= TICK_GAP) {
                Some((mantissas, _)) => decade_values(mantissas, 1),
                None => decade_values(&[1.0], (TICK_GAP / px_per_decade).ceil() as i32),
            }
        };
        let minor = if px_per_decade >= 80.0 {
            decade_values(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)
                .into_iter()
                .filter(|v| !ticks.iter().any(|t| (t / v - 1.0).abs() < 1e-6))
                .collect()
        } else {
            Vec::new()
        };
        Axis { log: true, lo, hi, ticks, minor }
    }

    /// A linear axis covering `min..max` over `px` pixels, with ticks at 1, 2 or 5 × 10^k steps.
    fn linear(min: f64, max: f64, px: f64) -> Axis {
        let (min, max) = if max - min > f64::EPSILON * max.abs().max(1.0) {
            (min, max)
        } else {
            let pad = (max.abs() * 0.1).max(1.0);
            (min - pad, max + pad)
        };
        // The smallest 1, 2, 2.5 or 5 × 10^k step that needs at most `intervals` intervals.
        let intervals = (px / 50.0).clamp(3.0, 10.0).floor();
        let bounds = |step: f64| ((min / step + 1e-9).floor() * step, (max / step - 1e-9).ceil() * step);
        let mut decade = 10f64.powf(((max - min) / intervals).log10().floor());
        let step = 'search: loop {
            for m in [1.0, 2.0, 2.5, 5.0] {
                let step = m * decade;
                let (lo, hi) = bounds(step);
                if (hi - lo) / step <= intervals + 1e-9 {
                    break 'search step;
                }
            }
            decade *= 10.0;
        };
        let (lo, hi) = bounds(step);
        let ticks =
            (0..).map(|i| round_sig(lo + f64::from(i) * step, 12)).take_while(|&v| v <= hi + step * 1e-6).collect();
        Axis { log: false, lo, hi, ticks, minor: Vec::new() }
    }
}

/// plotters' view of an [`Axis`]: linear, with exactly the axis' ticks (bold key points, which
/// get labels) and minor grid lines (light key points).
#[derive(Clone, Debug)]
struct Ticked {
    range: Range<f64>,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span.abs() < f64::EPSILON {
            return (limit.0 + limit.1) / 2;
        }
        let share = (value - self.range.start) / span;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { self.minor.clone() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The largest 1, 2 or 5 × 10^k not above `v` (> 0).
fn nice_floor(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    let m = v / p;
    p * if m >= 5.0 {
        5.0
    } else if m >= 2.0 {
        2.0
    } else {
        1.0
    }
}

/// The smallest 1, 2 or 5 × 10^k not below `v` (> 0).
fn nice_ceil(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    let m = v / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// The range of a logarithmic axis around positive values from `min` to `max`.
fn log_bounds(min: f64, max: f64) -> (f64, f64) {
    (nice_floor(min / 1.25), nice_ceil(max * 1.25))
}

fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A tick label: 3 significant digits, thousands separated by commas.
fn fmt_num(v: f64) -> String {
    let v = round_sig(v, 3);
    if v.abs() >= 1_000.0 {
        let digits = format!("{}", v.abs().round() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else {
        format!("{v}")
    }
}

/// A duration given in µs, in the unit that reads best.
fn fmt_us(v: f64) -> String {
    if v < 1_000.0 {
        format!("{} µs", fmt_num(v))
    } else if v < 1_000_000.0 {
        format!("{} ms", fmt_num(v / 1_000.0))
    } else {
        format!("{} s", fmt_num(v / 1_000_000.0))
    }
}

/// A value with one decimal (or none from 100 on), for bar labels.
fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn text_width(area: &Area, text: &str, style: &TextStyle) -> Res<u32> {
    Ok(area.estimate_text_size(text, style)?.0)
}

/// `text`, shortened with "…" until it is at most `max` pixels wide.
fn fit_text(area: &Area, text: &str, style: &TextStyle, max: u32) -> Res<String> {
    if text_width(area, text, style)? <= max {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let shortened = format!("{}…", chars.iter().collect::<String>().trim_end());
        if text_width(area, &shortened, style)? <= max {
            return Ok(shortened);
        }
    }
    Ok("…".to_string())
}

/// Width of the plotting area of a chart built on `area` with a y label area of `y_area`.
fn plot_width(area: &Area, y_area: u32) -> f64 {
    f64::from(area.dim_in_pixel().0.saturating_sub(MARGIN_LEFT + MARGIN_RIGHT + y_area).max(50))
}

fn plot_height(area: &Area) -> f64 {
    f64::from(area.dim_in_pixel().1.saturating_sub(CAPTION_HEIGHT + MARGIN_TOP + X_LABEL_AREA).max(50))
}

/// The width of the y label area for `y`'s tick labels and the rotated axis title.
fn y_label_area(area: &Area, y: &Axis) -> Res<u32> {
    let mut widest = 0;
    for &tick in &y.ticks {
        widest = widest.max(text_width(area, &fmt_num(tick), &label_style())?);
    }
    Ok((widest + 40).max(56))
}

fn build_chart<'a, 'b>(area: &'a Area<'b>, title: &str, y_area: u32, x: &Axis, y: &Axis) -> Res<Chart<'a, 'b>> {
    Ok(ChartBuilder::on(area)
        .caption(title, caption_style())
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_top(MARGIN_TOP)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x.coord(), y.coord())?)
}

struct Mesh<'m> {
    x_desc: &'m str,
    y_desc: &'m str,
    x_label: &'m dyn Fn(f64) -> String,
    y_label: &'m dyn Fn(f64) -> String,
    x_grid: bool,
    y_grid: bool,
}

fn draw_mesh(chart: &mut Chart, x: &Axis, y: &Axis, mesh: Mesh) -> Res {
    let x_label = |t: &f64| (mesh.x_label)(x.inv(*t));
    let y_label = |t: &f64| (mesh.y_label)(y.inv(*t));
    let mut style = chart.configure_mesh();
    style
        .x_labels(x.ticks.len().max(1))
        .y_labels(y.ticks.len().max(1))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_desc(mesh.x_desc)
        .y_desc(mesh.y_desc)
        .label_style(label_style())
        .axis_desc_style(font(15.0))
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .axis_style(AXIS.stroke_width(1));
    if !mesh.x_grid {
        style.disable_x_mesh();
    }
    if !mesh.y_grid {
        style.disable_y_mesh();
    }
    style.draw()?;
    Ok(())
}

/// A panel without data: its title, an empty frame and "not measured".
fn not_measured(area: &Area, title: &str) -> Res {
    let axis = Axis::plain(0.0, 1.0);
    let mut chart = build_chart(area, title, Y_LABEL_AREA, &axis, &axis)?;
    chart.configure_mesh().disable_mesh().axis_style(AXIS.stroke_width(1)).draw()?;
    let (w, h) = chart.plotting_area().dim_in_pixel();
    pixels(&chart).draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], RULE))?;
    chart.draw_series(std::iter::once(Text::new(
        "not measured",
        (0.5, 0.5),
        font(22.0).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
    )))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Legends: one or more rows of swatches with their text, below a panel's chart.

#[derive(Clone, Copy)]
enum Swatch {
    Fill(RGBColor),
    Line { colour: RGBColor, daemonic: bool },
    Whisker,
    P99,
}

struct Entry {
    swatch: Swatch,
    text: String,
}

const LEGEND_ROW: i32 = 22;
const SWATCH_WIDTH: i32 = 26;

/// Splits `area` into the chart and, below it, a legend with `entries`, which it draws.
fn with_legend<'b>(area: &Area<'b>, entries: &[Entry]) -> Res<Area<'b>> {
    let style = font(15.0);
    let (width, height) = area.dim_in_pixel();
    let (width, height) = (width as i32, height as i32);
    let start = (MARGIN_LEFT + Y_LABEL_AREA / 2) as i32;
    let mut placed = Vec::with_capacity(entries.len());
    let (mut x, mut row) = (start, 0);
    for entry in entries {
        let text = fit_text(area, &entry.text, &style, (width - start - 60).max(40) as u32)?;
        let w = SWATCH_WIDTH + 8 + text_width(area, &text, &style)? as i32;
        if x > start && x + w > width - 10 {
            x = start;
            row += 1;
        }
        placed.push((x, row, text));
        x += w + 22;
    }
    let legend_height = (row + 1) * LEGEND_ROW + 6;
    let (chart, legend) = area.split_vertically(height - legend_height);
    for (entry, (x, row, text)) in entries.iter().zip(placed) {
        let y = row * LEGEND_ROW + LEGEND_ROW / 2 + 2;
        draw_swatch(&legend, entry.swatch, x, y)?;
        legend.draw(&Text::new(text, (x + SWATCH_WIDTH + 8, y), left(font(15.0))))?;
    }
    Ok(chart)
}

fn draw_swatch(area: &Area, swatch: Swatch, x: i32, y: i32) -> Res {
    let end = x + SWATCH_WIDTH;
    match swatch {
        Swatch::Fill(colour) => {
            area.draw(&Rectangle::new([(x + 2, y - 6), (end - 2, y + 6)], colour.filled()))?;
        }
        Swatch::Line { colour, daemonic } => {
            let line = colour.stroke_width(2);
            if daemonic {
                area.draw(&PathElement::new(vec![(x, y), (end, y)], line))?;
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + 8, y)], line))?;
                area.draw(&PathElement::new(vec![(end - 8, y), (end, y)], line))?;
            }
            marker(area, (x + SWATCH_WIDTH / 2, y), colour, daemonic)?;
        }
        Swatch::Whisker => {
            let style = WHISKER.stroke_width(1);
            area.draw(&PathElement::new(vec![(x + 2, y), (end - 2, y)], style))?;
            area.draw(&PathElement::new(vec![(x + 2, y - 5), (x + 2, y + 5)], style))?;
            area.draw(&PathElement::new(vec![(end - 2, y - 5), (end - 2, y + 5)], style))?;
        }
        Swatch::P99 => {
            diamond(area, (x + SWATCH_WIDTH / 2, y))?;
        }
    }
    Ok(())
}

/// Draws a series' marker at the pixel `at`: a circle for daemonic, a square for a peer.
fn marker(area: &Area, at: (i32, i32), colour: RGBColor, daemonic: bool) -> Res {
    if daemonic {
        area.draw(&Circle::new(at, 4, colour.filled()))?;
    } else {
        let (x, y) = at;
        area.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], colour.filled()))?;
    }
    Ok(())
}

/// Draws the p99 marker at the pixel `at`: a black diamond with a white rim.
fn diamond(area: &Area, (x, y): (i32, i32)) -> Res {
    let corners = vec![(x, y - 7), (x + 5, y), (x, y + 7), (x - 5, y)];
    area.draw(&Polygon::new(corners.clone(), P99.filled()))?;
    let mut rim = corners;
    rim.push((x, y - 7));
    area.draw(&PathElement::new(rim, WHITE.stroke_width(1)))?;
    Ok(())
}

/// The chart's plotting area in pixels (origin at its top left), to draw markers and whiskers.
fn pixels<'b>(chart: &Chart<'_, 'b>) -> Area<'b> {
    chart.plotting_area().strip_coord_spec()
}

/// The pixel of a plotting coordinate, in [`pixels`].
fn pixel(chart: &Chart, at: (f64, f64)) -> (i32, i32) {
    let (x, y) = chart.backend_coord(&at);
    let (x0, y0) = chart.plotting_area().get_base_pixel();
    (x - x0, y - y0)
}

/// Colours for `series`: daemonic's from the blues, the peers' from the warm colours.
fn colours(daemonic: impl Iterator<Item = bool>) -> Vec<RGBColor> {
    let (mut ours, mut peers) = (0, 0);
    daemonic
        .map(|d| {
            if d {
                ours += 1;
                DAEMONIC_COLOURS[(ours - 1) % DAEMONIC_COLOURS.len()]
            } else {
                peers += 1;
                PEER_COLOURS[(peers - 1) % PEER_COLOURS.len()]
            }
        })
        .collect()
}

/// Which way a whisker runs: along the x axis, or along the y axis moved `offset` pixels right.
#[derive(Clone, Copy)]
enum Direction {
    Horizontal,
    Vertical { offset: i32 },
}

/// Draws a whisker from `lo` to `hi` (data values on `axis`) through the bar or point at `at`
/// (plotting coordinates). NaN or infinite ends are taken as `median`; ends clamped to the axis
/// (e.g. a lo ≤ 0 on a log axis) are drawn without a cap.
fn whisker(
    chart: &Chart,
    at: (f64, f64),
    (median, lo, hi): (f64, f64, f64),
    axis: &Axis,
    direction: Direction,
    colour: RGBColor,
) -> Res {
    let lo = if lo.is_finite() { lo } else { median };
    let hi = if hi.is_finite() { hi } else { median };
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !lo.is_finite() || !hi.is_finite() {
        return Ok(());
    }
    let (horizontal, offset) = match direction {
        Direction::Horizontal => (true, 0),
        Direction::Vertical { offset } => (false, offset),
    };
    // A point `along` the whisker's axis, `across` pixels off it.
    let point = |v: f64, across: i32| {
        let c = axis.clamp(v);
        if horizontal {
            let (x, y) = pixel(chart, (c, at.1));
            (x, y + across)
        } else {
            let (x, y) = pixel(chart, (at.0, c));
            (x + offset + across, y)
        }
    };
    if point(lo, 0) == point(hi, 0) {
        return Ok(());
    }
    let area = pixels(chart);
    let style = colour.stroke_width(1);
    area.draw(&PathElement::new(vec![point(lo, 0), point(hi, 0)], style))?;
    for end in [lo, hi] {
        if axis.inside(end) {
            area.draw(&PathElement::new(vec![point(end, -4), point(end, 4)], style))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Panel 1: spawn + wait per child.

fn spawn_panel(area: &Area, bars: &[Bar]) -> Res {
    const TITLE: &str = "spawn + wait per child (µs, p50)";
    let measured = |b: &Bar| positive(b.p50.median);
    if !bars.iter().any(measured) {
        return not_measured(area, TITLE);
    }
    let mut entries = vec![
        Entry { swatch: Swatch::Fill(DAEMONIC_BAR), text: "daemonic".into() },
        Entry { swatch: Swatch::Fill(PEER_BAR), text: "other ways to spawn".into() },
        Entry { swatch: Swatch::Whisker, text: "spread (lo–hi)".into() },
    ];
    if bars.iter().any(|b| b.p99.is_some_and(positive)) {
        entries.push(Entry { swatch: Swatch::P99, text: "p99".into() });
    }
    let area = with_legend(area, &entries)?;

    let n = bars.len();
    let style = font(15.0);
    let (width, _) = area.dim_in_pixel();
    let max_label = (width as f64 * 0.42) as u32;
    let labels = bars.iter().map(|b| fit_text(&area, &b.label, &style, max_label)).collect::<Res<Vec<_>>>()?;
    let mut y_area = 0;
    for label in &labels {
        y_area = y_area.max(text_width(&area, label, &style)?);
    }
    let y_area = y_area + 16;
    let plot_w = plot_width(&area, y_area);

    // Every finite positive value, and how far right each bar reaches with its annotation.
    let annotation_style = font(14.0).color(&INK);
    let (mut min, mut max) = (f64::INFINITY, 0f64);
    let mut reach = Vec::with_capacity(n);
    for b in bars {
        let values = [b.p50.median, b.p50.lo, b.p50.hi, b.p99.unwrap_or(f64::NAN)];
        // An infinite or NaN value is skipped (a whisker end then stops at the median).
        let values: Vec<f64> = values.into_iter().filter(|&v| positive(v)).collect();
        for &v in &values {
            min = min.min(v);
            max = max.max(v);
        }
        if measured(b) {
            let end = values.iter().copied().fold(0f64, f64::max);
            let text = annotation(b);
            reach.push((end, f64::from(text_width(&area, &text, &annotation_style)? + 14)));
        }
    }
    let (lo, hi) = log_bounds(min, max);
    // Widen the axis so that each annotation fits right of its bar: with r the annotation's share
    // of the width, log(end) + r·(log(hi) − log(lo)) ≤ log(hi).
    let hi = reach
        .iter()
        .map(|&(end, px)| {
            let r = (px / plot_w).min(0.8);
            10f64.powf((end.log10() - r * lo.log10()) / (1.0 - r))
        })
        .fold(hi, f64::max);
    let x = Axis::log(lo, hi, plot_w, &[]);
    // Row i (from the top) spans n-1-i .. n-i; its label sits at the centre.
    let mut y = Axis::plain(0.0, n as f64);
    y.ticks = (0..n).map(|i| n as f64 - i as f64 - 0.5).collect();
    let mut chart = build_chart(&area, TITLE, y_area, &x, &y)?;
    let row_label = |v: f64| {
        let i = (n as f64 - 0.5 - v).round();
        if i >= 0.0 && (i as usize) < n { labels[i as usize].clone() } else { String::new() }
    };
    draw_mesh(
        &mut chart,
        &x,
        &y,
        Mesh {
            x_desc: "µs per child (log scale)",
            y_desc: "",
            x_label: &fmt_num,
            y_label: &row_label,
            x_grid: true,
            y_grid: false,
        },
    )?;

    let base = x.t(x.lo);
    for (i, b) in bars.iter().enumerate() {
        let centre = n as f64 - i as f64 - 0.5;
        if !measured(b) {
            chart.draw_series(std::iter::once(
                EmptyElement::at((base, centre)) + Text::new("not measured", (8, 0), left(font(14.0).color(&MUTED))),
            ))?;
            continue;
        }
        let colour = if b.daemonic { DAEMONIC_BAR } else { PEER_BAR };
        let median = x.clamp(b.p50.median);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(base, centre - 0.32), (median, centre + 0.32)],
            colour.filled(),
        )))?;
        let spread = (b.p50.median, b.p50.lo, b.p50.hi);
        let direction = Direction::Horizontal;
        whisker(&chart, (median, centre), spread, &x, direction, WHISKER)?;
        let mut end = [b.p50.median, b.p50.lo, b.p50.hi].into_iter().filter(|&v| positive(v)).fold(0f64, f64::max);
        if let Some(p99) = b.p99.filter(|&v| positive(v)) {
            diamond(&pixels(&chart), pixel(&chart, (x.clamp(p99), centre)))?;
            end = end.max(p99);
        }
        chart.draw_series(std::iter::once(
            EmptyElement::at((x.clamp(end), centre))
                + Text::new(annotation(b), (10, 0), left(annotation_style.clone())),
        ))?;
    }
    Ok(())
}

/// The p50 written beside its bar, e.g. "980 µs" or "2.5 ms".
fn annotation(b: &Bar) -> String {
    fmt_us(b.p50.median)
}

// ---------------------------------------------------------------------------------------------
// Panels 2 and 3: lines over a logarithmic x axis.

enum YScale {
    /// Always logarithmic.
    Log,
    /// Linear from 0, or logarithmic when the values span more than a factor of 20.
    Auto,
}

struct LinePanel {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    y_scale: YScale,
}

fn line_panel(area: &Area, panel: &LinePanel, series: &[Series]) -> Res {
    // Usable points: finite x > 0 and a finite median (> 0 if the y axis may be logarithmic;
    // checked again below once the scale is known).
    let points: Vec<Vec<(f64, &Figure)>> = series
        .iter()
        .map(|s| s.points.iter().filter(|(x, f)| positive(*x) && f.median.is_finite()).map(|(x, f)| (*x, f)).collect())
        .collect();
    let medians = || points.iter().flatten().map(|(_, f)| f.median);
    let log_y = match panel.y_scale {
        YScale::Log => true,
        YScale::Auto => {
            let (min, max) = medians().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            min > 0.0 && max / min > 20.0
        }
    };
    let points: Vec<Vec<(f64, &Figure)>> =
        points.into_iter().map(|p| p.into_iter().filter(|(_, f)| !log_y || f.median > 0.0).collect()).collect();
    if points.iter().all(Vec::is_empty) {
        return not_measured(area, panel.title);
    }
    let colours = colours(series.iter().map(|s| s.daemonic));
    let entries: Vec<Entry> = series
        .iter()
        .zip(&points)
        .zip(&colours)
        .map(|((s, p), &colour)| Entry {
            swatch: Swatch::Line { colour, daemonic: s.daemonic },
            text: if p.is_empty() { format!("{} (not measured)", s.label) } else { s.label.clone() },
        })
        .collect();
    let area = with_legend(area, &entries)?;

    let ys = points
        .iter()
        .flatten()
        .flat_map(|(_, f)| [f.median, f.lo, f.hi])
        .filter(|&v| if log_y { positive(v) } else { v.is_finite() });
    let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let y = if log_y {
        let (lo, hi) = log_bounds(y_min, y_max);
        Axis::log(lo, hi, plot_height(&area), &[])
    } else {
        Axis::linear(y_min.min(0.0), y_max * 1.05, plot_height(&area))
    };
    let y_desc = if log_y { format!("{} (log scale)", panel.y_desc) } else { panel.y_desc.to_string() };
    let y_area = y_label_area(&area, &y)?;
    let xs: Vec<f64> = points.iter().flatten().map(|(x, _)| *x).collect();
    let (x_min, x_max) = xs.iter().fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    let (x_lo, x_hi) = log_bounds(x_min, x_max);
    let x = Axis::log(x_lo, x_hi, plot_width(&area, y_area), &xs);
    let mut chart = build_chart(&area, panel.title, y_area, &x, &y)?;
    draw_mesh(
        &mut chart,
        &x,
        &y,
        Mesh {
            x_desc: panel.x_desc,
            y_desc: &y_desc,
            x_label: &fmt_num,
            y_label: &fmt_num,
            x_grid: true,
            y_grid: true,
        },
    )?;

    let count = series.len();
    for (j, ((s, p), &colour)) in series.iter().zip(&points).zip(&colours).enumerate() {
        let coords: Vec<(f64, f64)> = p.iter().map(|(px, f)| (x.t(*px), y.t(f.median))).collect();
        let line = colour.stroke_width(2);
        if s.daemonic {
            chart.draw_series(LineSeries::new(coords.iter().copied(), line))?;
        } else {
            chart.draw_series(DashedLineSeries::new(coords.iter().copied(), 8, 5, line))?;
        }
        // Whiskers side by side where series share an x.
        let offset = ((j as f64 - (count as f64 - 1.0) / 2.0) * 3.0).round() as i32;
        for (&at, (_, f)) in coords.iter().zip(p) {
            let spread = (f.median, f.lo, f.hi);
            let direction = Direction::Vertical { offset };
            whisker(&chart, at, spread, &y, direction, colour)?;
        }
        let area = pixels(&chart);
        for &at in &coords {
            marker(&area, pixel(&chart, at), colour, s.daemonic)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Panel 4: footprint, grouped bars over the measured member counts.

fn footprint_panel(area: &Area, series: &[Series]) -> Res {
    const TITLE: &str = "footprint: RSS with idle members (MiB)";
    let usable = |(x, f): &&(f64, Figure)| x.is_finite() && f.median.is_finite();
    let mut groups: Vec<f64> = series.iter().flat_map(|s| s.points.iter().filter(usable).map(|(x, _)| *x)).collect();
    groups.sort_by(f64::total_cmp);
    groups.dedup();
    if groups.is_empty() {
        return not_measured(area, TITLE);
    }
    let colours = colours(series.iter().map(|s| s.daemonic));
    let entries: Vec<Entry> = series
        .iter()
        .zip(&colours)
        .map(|(s, &colour)| Entry {
            swatch: Swatch::Fill(colour),
            text: if s.points.iter().any(|p| usable(&p)) {
                s.label.clone()
            } else {
                format!("{} (not measured)", s.label)
            },
        })
        .collect();
    let area = with_legend(area, &entries)?;

    let values = series
        .iter()
        .flat_map(|s| s.points.iter().filter(usable))
        .flat_map(|(_, f)| [f.median, f.lo, f.hi])
        .filter(|v| v.is_finite());
    let (min, max) = values.fold((0f64, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    // Headroom above the highest whisker for the value labels.
    let y = Axis::linear(min, if max > 0.0 { max * 1.12 } else { max }, plot_height(&area));
    let mut x = Axis::plain(0.0, groups.len() as f64);
    x.ticks = (0..groups.len()).map(|k| k as f64 + 0.5).collect();
    let mut chart = build_chart(&area, TITLE, y_label_area(&area, &y)?, &x, &y)?;
    let group_label = |v: f64| {
        let k = (v - 0.5).round();
        if k >= 0.0 && (k as usize) < groups.len() { fmt_num(groups[k as usize]) } else { String::new() }
    };
    draw_mesh(
        &mut chart,
        &x,
        &y,
        Mesh {
            x_desc: "idle members (groups, not to scale)",
            y_desc: "MiB RSS",
            x_label: &group_label,
            y_label: &fmt_num,
            x_grid: false,
            y_grid: true,
        },
    )?;

    let count = series.len().max(1) as f64;
    let group_width = 0.72;
    let bar_width = group_width / count;
    let zero = y.clamp(0.0);
    for (j, (s, &colour)) in series.iter().zip(&colours).enumerate() {
        for (value, f) in s.points.iter().filter(usable) {
            let Some(k) = groups.iter().position(|g| g == value) else {
                continue;
            };
            let x0 = k as f64 + (1.0 - group_width) / 2.0 + j as f64 * bar_width;
            let x1 = x0 + bar_width * 0.9;
            let centre = (x0 + x1) / 2.0;
            let median = y.clamp(f.median);
            chart.draw_series(std::iter::once(Rectangle::new([(x0, zero), (x1, median)], colour.filled())))?;
            let spread = (f.median, f.lo, f.hi);
            let direction = Direction::Vertical { offset: 0 };
            whisker(&chart, (centre, median), spread, &y, direction, WHISKER)?;
            let top = [f.median, f.lo, f.hi].into_iter().filter(|v| v.is_finite()).fold(f.median, f64::max);
            chart.draw_series(std::iter::once(
                EmptyElement::at((centre, y.clamp(top)))
                    + Text::new(fmt_value(f.median), (0, -6), font(14.0).pos(Pos::new(HPos::Center, VPos::Bottom))),
            ))?;
        }
    }
    Ok(())
}
