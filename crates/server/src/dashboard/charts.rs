//! Charts as inline SVG, drawn on the server: a sparkline for a table cell, a line chart of a
//! KPI against its baseline and target, and bars of a weekly figure. Only numbers we computed
//! and labels we escape go into the markup; colours come from the stylesheet's classes, so
//! dark mode needs nothing here.

use std::fmt::Write;

use shopfloor_core::policy_doc::html_escape as escape;

/// The range a chart spans: the values and the reference lines, padded so a flat series is
/// not drawn on the frame.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if (high - low).abs() < f64::EPSILON {
        let pad = if high == 0.0 { 1.0 } else { high.abs() * 0.1 };
        return (low - pad, high + pad);
    }
    let pad = (high - low) * 0.08;
    (low - pad, high + pad)
}

/// A small line of `values` (oldest first), `label` read out by screen readers. Empty for
/// fewer than two values.
pub(crate) fn sparkline(values: &[f64], label: &str) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let (w, h) = (96.0, 24.0);
    let (low, high) = span(values.iter().copied());
    let points = polyline(values, w, h, 2.0, low, high);
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{}\"><polyline class=\"series\" fill=\"none\" points=\"{points}\"/></svg>",
        escape(label)
    )
}

fn polyline(values: &[f64], w: f64, h: f64, pad: f64, low: f64, high: f64) -> String {
    let n = values.len().max(2) - 1;
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = pad + (w - 2.0 * pad) * i as f64 / n as f64;
        let y = h - pad - (h - 2.0 * pad) * (v - low) / (high - low);
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.trim_end().to_string()
}

/// A point of a time series: its label on the x axis and its value.
pub(crate) struct Point {
    pub label: String,
    pub value: f64,
}

/// A line chart of `points` with dashed lines at `baseline` and `target`.
pub(crate) fn kpi_chart(
    points: &[Point],
    baseline: Option<f64>,
    target: Option<f64>,
    label: &str,
) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (w, h, left, bottom, top) = (640.0, 200.0, 48.0, 28.0, 12.0);
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let (low, high) = span(values.iter().copied().chain(baseline).chain(target));
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - low) / (high - low));
    let n = points.len().max(2) - 1;
    let x = |i: usize| left + (w - left - 12.0) * i as f64 / n as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for (name, value) in [("baseline", baseline), ("target", target)] {
        if let Some(v) = value {
            let _ = write!(
                svg,
                "<line class=\"ref {name}\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{name} {}</text>",
                w - 12.0,
                w - 14.0,
                y(v) - 4.0,
                trim_number(v),
                y = y(v)
            );
        }
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        left - 6.0,
        y(high) + 10.0,
        trim_number(high),
        left - 6.0,
        y(low),
        trim_number(low)
    );
    let line: Vec<String> = (0..points.len())
        .map(|i| format!("{:.1},{:.1}", x(i), y(values[i])))
        .collect();
    if points.len() > 1 {
        let _ = write!(
            svg,
            "<polyline class=\"series\" fill=\"none\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            svg,
            "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}: {}</title></circle>",
            x(i),
            y(p.value),
            escape(&p.label),
            trim_number(p.value)
        );
    }
    let first = &points[0].label;
    let last = &points[points.len() - 1].label;
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{left}\" y=\"{}\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        h - 8.0,
        escape(first),
        w - 12.0,
        h - 8.0,
        escape(last)
    );
    svg
}

/// Bars of `points` (one per week or day); a point whose value is `None` (no runs) gets no
/// bar, which is not the same as a bar of zero.
pub(crate) fn bars(points: &[(String, Option<f64>)], label: &str, unit: &str) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (w, h, bottom, top) = (640.0, 140.0, 22.0, 10.0);
    let high = points
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let slot = (w - 8.0) / points.len() as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for (i, (name, value)) in points.iter().enumerate() {
        let x = 4.0 + slot * i as f64;
        if let Some(v) = value {
            let height = (h - top - bottom) * v / high;
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
                 <title>{}: {}{}</title></rect>",
                x + slot * 0.15,
                h - bottom - height,
                slot * 0.7,
                escape(name),
                trim_number(*v),
                escape(unit)
            );
        }
        if points.len() <= 16 || i % (points.len() / 8).max(1) == 0 {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                h - 6.0,
                escape(name.rsplit('-').next().unwrap_or(name))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn trim_number(v: f64) -> String {
    if (v.fract().abs() < 1e-9 && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_numbers_only_are_drawn() {
        let svg = sparkline(&[1.0, 2.0, 1.5], "<script>alert(1)</script>");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"));
        let chart = kpi_chart(
            &[
                Point {
                    label: "2026-W01".into(),
                    value: 20.0,
                },
                Point {
                    label: "x\"y".into(),
                    value: 18.0,
                },
            ],
            Some(24.0),
            Some(12.0),
            "KPI",
        );
        assert!(
            chart.contains("baseline 24") && chart.contains("target 12"),
            "{chart}"
        );
        assert!(chart.contains("x&quot;y"));
        assert_eq!(chart.matches("<circle").count(), 2);
    }

    #[test]
    fn a_week_without_runs_has_no_bar() {
        let svg = bars(
            &[
                ("W1".into(), Some(3.0)),
                ("W2".into(), None),
                ("W3".into(), Some(0.0)),
            ],
            "runs",
            " runs",
        );
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
    }

    #[test]
    fn too_few_values_draw_nothing() {
        assert_eq!(sparkline(&[1.0], "one"), "");
        assert_eq!(kpi_chart(&[], None, None, "none"), "");
    }
}
