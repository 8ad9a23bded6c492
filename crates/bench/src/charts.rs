//! SVG charts for `BENCHMARKS.md`, drawn with `plotters`' SVG backend.
//!
//! Text is written as SVG `<text>` elements that the viewer lays out in its own sans-serif:
//! built without a font feature, plotters only estimates text widths from the character count
//! (for margins and label spacing), so drawing needs no font file, downloads nothing and looks
//! up no system fonts, and the same figures give the same SVG on every machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const SIZE: (u32, u32) = (720, 420);
/// Distinct on white and for the common kinds of colour blindness (Okabe and Ito).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];
const FONT: &str = "sans-serif";

/// The report's folder; charts go in its `docs/bench`, which the report links to.
static REPORT_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the report's folder (once, before any section draws).
pub(crate) fn set_dir(report_dir: &Path) {
    let _ = REPORT_DIR.set(report_dir.to_owned());
}

/// Where chart `name` goes: `docs/bench/{name}.svg` beside the report, linked from it as
/// `![...](docs/bench/{name}.svg)`.
pub(crate) fn path(name: &str) -> PathBuf {
    REPORT_DIR.get().map_or_else(PathBuf::new, Clone::clone).join(format!("docs/bench/{name}.svg"))
}

/// One line of a line chart: its legend name and its (x, y) points.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One system's bars in a grouped bar chart: its legend name and a value per group.
#[derive(Debug, Clone)]
pub(crate) struct Bars {
    pub(crate) name: String,
    pub(crate) values: Vec<f64>,
}

/// What every chart has: where it goes and what it says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Labels<'a> {
    pub(crate) title: &'a str,
    pub(crate) x: &'a str,
    pub(crate) y: &'a str,
}

/// A line chart of `series`, points marked, the x axis logarithmic if `x_log` (for sizes
/// that grow by powers of ten). The y axis starts at zero, so ratios read true.
pub(crate) fn lines(
    path: &Path,
    labels: Labels<'_>,
    x_log: bool,
    series: &[Line],
) -> anyhow::Result<()> {
    let xs = || series.iter().flat_map(|line| line.points.iter().map(|point| point.0));
    let (x_min, x_max) =
        xs().fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), x| (low.min(x), high.max(x)));
    anyhow::ensure!(x_min.is_finite(), "a chart needs points");
    let y_max =
        series.iter().flat_map(|line| line.points.iter().map(|point| point.1)).fold(0.0, f64::max);
    let y_range = 0.0..nice_ceiling(y_max);
    if x_log {
        // A little room either side, so the end points are not drawn on the frame.
        let range = (x_min / 1.5)..(x_max * 1.5);
        draw_lines(path, labels, range.log_scale(), y_range, series)
    } else {
        let pad = ((x_max - x_min) * 0.05).max(0.5);
        draw_lines(path, labels, (x_min - pad)..(x_max + pad), y_range, series)
    }
}

fn draw_lines<X>(
    path: &Path,
    labels: Labels<'_>,
    x_range: X,
    y_range: std::ops::Range<f64>,
    series: &[Line],
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let root = canvas(path)?;
    let mut chart = frame(&root, labels.title).build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .label_style((FONT, 16))
        .max_light_lines(2)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for (index, line) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(line.points.iter().map(|&point| Circle::new(point, 4, color.filled())))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Turns/s by client count, one bar per system, drawn as chart `name`; answers the Markdown
/// that shows it, for the section to write under its table.
pub(crate) fn turns_by_clients(
    name: &str,
    title: &str,
    clients: &[usize],
    series: &[Bars],
) -> anyhow::Result<String> {
    let groups: Vec<String> = clients
        .iter()
        .map(|count| format!("{count} client{}", if *count == 1 { "" } else { "s" }))
        .collect();
    bars(&path(name), Labels { title, x: "concurrent clients", y: "turns/s" }, &groups, series)?;
    Ok(format!("![{title}](docs/bench/{name}.svg)"))
}

/// Empty bars named `names`, for a table to fill group by group.
pub(crate) fn empty_bars(names: &[&str]) -> Vec<Bars> {
    names.iter().map(|name| Bars { name: (*name).to_owned(), values: Vec::new() }).collect()
}

/// A grouped bar chart: for each of `groups` (e.g. client counts), one bar per system in
/// `series`, side by side, values written above the bars.
pub(crate) fn bars(
    path: &Path,
    labels: Labels<'_>,
    groups: &[String],
    series: &[Bars],
) -> anyhow::Result<()> {
    anyhow::ensure!(!groups.is_empty() && !series.is_empty(), "a chart needs bars");
    let y_max = series.iter().flat_map(|bars| bars.values.iter().copied()).fold(0.0, f64::max);
    let root = canvas(path)?;
    let mut chart = frame(&root, labels.title)
        .build_cartesian_2d(0.0..groups.len() as f64, 0.0..nice_ceiling(y_max * 1.08))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .y_label_formatter(&|y| short(*y))
        .label_style((FONT, 16))
        .max_light_lines(2)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    // Each group spans one unit: bars share its middle 80%.
    let width = 0.8 / series.len() as f64;
    for (index, bars) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let left = |group: usize| group as f64 + 0.1 + width * index as f64;
        chart
            .draw_series(bars.values.iter().enumerate().map(|(group, &value)| {
                Rectangle::new(
                    [(left(group), 0.0), (left(group) + width * 0.92, value)],
                    color.filled(),
                )
            }))?
            .label(bars.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        let value_style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.values.iter().enumerate().map(|(group, &value)| {
            Text::new(
                format!("{value:.0}"),
                (left(group) + width * 0.46, value),
                value_style.clone(),
            )
        }))?;
    }
    // The group names under the axis, centred on their groups (a numeric axis would put its
    // ticks wherever it likes).
    let name_style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (group, name) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(group as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.as_str(), (x, y + 6), name_style.clone()))?;
    }
    // The first groups (fewest clients) usually have the lowest bars.
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 16))
        .draw()?;
    Ok(())
}

/// A blank chart-sized SVG at `path`, its folder made if need be.
fn canvas(path: &Path) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}

/// Every chart's title, margins and room for axis labels, ready for its axes.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, (FONT, 24)).margin(16).x_label_area_size(44).y_label_area_size(64);
    builder
}

/// The axis's top: the next round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of
/// ten) at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|step| step * power)
        .find(|top| *top >= value)
        .unwrap_or(10.0 * power)
}

/// 1500 as "1.5k", 10,000,000 as "10M": axis labels stay short.
fn short(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = if (scaled - scaled.round()).abs() < 0.05 {
        format!("{scaled:.0}")
    } else {
        format!("{scaled:.1}")
    };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("the chart was written")
    }

    /// The contents of the SVG's `<text>` elements, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| {
                let (_, rest) = element.split_once('>')?;
                Some(rest.split("</text>").next()?.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn a_line_chart_has_its_series_labels_and_lines() {
        let folder = std::env::temp_dir().join(format!("bench-charts-{}", std::process::id()));
        let path = folder.join("nested/growth.svg");
        let series = [
            Line { name: "chatstore".to_owned(), points: vec![(1e5, 1900.0), (1e7, 1750.0)] },
            Line { name: "pgbench floor".to_owned(), points: vec![(1e5, 3000.0), (1e7, 2900.0)] },
        ];
        let labels =
            Labels { title: "Turns as data grows", x: "items in the database", y: "turns/s" };
        lines(&path, labels, true, &series).expect("drawn");
        let svg = read(&path);
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "chatstore",
            "pgbench floor",
            "items in the database",
            "turns/s",
            "Turns as data grows",
            "10M",
            "100k",
        ] {
            assert!(texts(&svg).iter().any(|found| found == text), "no {text} in {svg}");
        }
        // The two lines, as polylines, and their four points.
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
        assert!(svg.matches("<circle").count() >= 4, "{svg}");
        if std::env::var_os("KEEP_CHARTS").is_none() {
            std::fs::remove_dir_all(&folder).expect("cleaned up");
        }
    }

    #[test]
    fn a_bar_chart_has_its_groups_systems_and_bars() {
        let folder = std::env::temp_dir().join(format!("bench-bars-{}", std::process::id()));
        let path = folder.join("turns.svg");
        let groups = ["1 client", "16 clients", "64 clients"].map(str::to_owned);
        let series = [
            Bars { name: "chatstore".to_owned(), values: vec![900.0, 2300.0, 2000.0] },
            Bars { name: "floor".to_owned(), values: vec![1100.0, 2800.0, 2900.0] },
        ];
        let labels = Labels { title: "Turns", x: "clients", y: "turns/s" };
        bars(&path, labels, &groups, &series).expect("drawn");
        let svg = read(&path);
        for text in ["1 client", "64 clients", "chatstore", "floor", "clients", "turns/s", "2300"] {
            assert!(texts(&svg).iter().any(|found| found == text), "no {text} in {svg}");
        }
        // Six bars and the legend's two swatches, at least.
        assert!(svg.matches("<rect").count() >= 8, "{svg}");
        if std::env::var_os("KEEP_CHARTS").is_none() {
            std::fs::remove_dir_all(&folder).expect("cleaned up");
        }
    }

    #[test]
    fn a_chart_without_points_is_refused() {
        let labels = Labels { title: "t", x: "x", y: "y" };
        let path = std::env::temp_dir().join("never-written.svg");
        assert!(lines(&path, labels, false, &[]).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short(10_000_000.0), "10M");
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(64.0), "64");
        assert_eq!(nice_ceiling(2290.0), 2500.0);
        assert_eq!(nice_ceiling(1800.0), 2000.0);
    }
}
