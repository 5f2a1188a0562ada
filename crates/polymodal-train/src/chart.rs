//! Small SVG charts: horizontal bars (results tables) and lines (training
//! curves). Plain SVG, readable in any browser and in rendered Markdown.

use std::fmt::Write;

/// One bar of a [`BarChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Length.
    pub value: f64,
    /// Half-width of an error bar (a standard deviation), if any.
    pub error: Option<f64>,
    /// Fill colour (any SVG colour).
    pub colour: String,
}

/// Horizontal bars over an axis from `min` to `max`, with an optional
/// dashed reference line and a legend.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title above the bars.
    pub title: String,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
    /// Axis start (values below are drawn as empty bars).
    pub min: f64,
    /// Axis end.
    pub max: f64,
    /// A vertical dashed line and its label.
    pub reference: Option<(String, f64)>,
    /// Legend entries (label, colour).
    pub legend: Vec<(String, String)>,
}

const LEFT: f64 = 240.0;
const WIDTH: f64 = 420.0;
const BAR: f64 = 20.0;
const GAP: f64 = 7.0;

impl BarChart {
    fn x(&self, value: f64) -> f64 {
        let span = (self.max - self.min).max(f64::EPSILON);
        LEFT + WIDTH * ((value - self.min) / span).clamp(0.0, 1.0)
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let bottom = 45.0 + self.bars.len() as f64 * (BAR + GAP);
        let height = bottom + 70.0;
        let mut svg = header(LEFT + WIDTH + 90.0, height, &self.title);
        // Axis with ticks at the ends and the middle.
        for value in [self.min, (self.min + self.max) / 2.0, self.max] {
            let x = self.x(value);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{t}\" stroke=\"black\"/>\
                 <text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{value:.3}</text>",
                t = bottom + 4.0,
                ty = bottom + 17.0,
            );
        }
        for (i, bar) in self.bars.iter().enumerate() {
            let y = 40.0 + i as f64 * (BAR + GAP);
            let end = self.x(bar.value);
            let _ = writeln!(
                svg,
                "<text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
                 <rect x=\"{LEFT}\" y=\"{y}\" width=\"{w:.1}\" height=\"{BAR}\" fill=\"{c}\"/>",
                tx = LEFT - 8.0,
                ty = y + BAR * 0.7,
                label = escape(&bar.label),
                w = end - LEFT,
                c = escape(&bar.colour),
            );
            let mut text_x = end + 5.0;
            if let Some(error) = bar.error {
                let (a, b) = (self.x(bar.value - error), self.x(bar.value + error));
                let mid = y + BAR / 2.0;
                let _ = writeln!(
                    svg,
                    "<line x1=\"{a:.1}\" y1=\"{mid}\" x2=\"{b:.1}\" y2=\"{mid}\" stroke=\"black\"/>"
                );
                text_x = b + 5.0;
            }
            let _ = writeln!(
                svg,
                "<text x=\"{text_x:.1}\" y=\"{ty:.1}\">{v:.3}</text>",
                ty = y + BAR * 0.7,
                v = bar.value
            );
        }
        if let Some((label, value)) = &self.reference {
            let x = self.x(*value);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"34\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\
                 <text x=\"{x:.1}\" y=\"{ly}\" text-anchor=\"middle\">{l}</text>",
                ly = bottom + 32.0,
                l = escape(label)
            );
        }
        legend(&mut svg, &self.legend, bottom + 55.0);
        svg.push_str("</svg>\n");
        svg
    }
}

/// One line of a [`LineChart`]: name, colour, `(x, y)` points.
pub type Series = (String, String, Vec<(f64, f64)>);

/// Lines of `(x, y)` points on shared axes, e.g. loss and accuracy per epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

impl LineChart {
    /// The chart as an SVG document. The vertical axis spans the data.
    pub fn svg(&self) -> String {
        let (w, h, left, top) = (520.0, 260.0, 60.0, 40.0);
        let points = self.series.iter().flat_map(|(_, _, p)| p.iter());
        let finite: Vec<(f64, f64)> = points
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let range = |values: Vec<f64>| {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() && hi > lo {
                (lo, hi)
            } else if lo.is_finite() {
                (lo - 0.5, lo + 0.5)
            } else {
                (0.0, 1.0)
            }
        };
        let (x0, x1) = range(finite.iter().map(|p| p.0).collect());
        let (y0, y1) = range(finite.iter().map(|p| p.1).collect());
        let px = |x: f64| left + w * (x - x0) / (x1 - x0);
        let py = |y: f64| top + h - h * (y - y0) / (y1 - y0);
        let mut svg = header(left + w + 40.0, top + h + 80.0, &self.title);
        let _ = writeln!(
            svg,
            "<rect x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"black\"/>\
             <text x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\">{xl}</text>",
            cx = left + w / 2.0,
            ly = top + h + 34.0,
            xl = escape(&self.x_label)
        );
        for (value, y) in [(y0, py(y0)), (y1, py(y1))] {
            let _ = writeln!(
                svg,
                "<text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{value:.3}</text>",
                tx = left - 5.0,
                ty = y + 4.0
            );
        }
        for (value, x) in [(x0, px(x0)), (x1, px(x1))] {
            let _ = writeln!(
                svg,
                "<text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{value}</text>",
                ty = top + h + 16.0
            );
        }
        for (_, colour, points) in &self.series {
            let path: Vec<String> = points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                path.join(" "),
                escape(colour)
            );
        }
        let entries: Vec<(String, String)> = self
            .series
            .iter()
            .map(|(name, colour, _)| (name.clone(), colour.clone()))
            .collect();
        legend(&mut svg, &entries, top + h + 60.0);
        svg.push_str("</svg>\n");
        svg
    }
}

fn header(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    )
}

fn legend(svg: &mut String, entries: &[(String, String)], y: f64) {
    for (i, (label, colour)) in entries.iter().enumerate() {
        let x = 10.0 + i as f64 * 150.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"{ry}\" width=\"12\" height=\"12\" fill=\"{c}\"/>\
             <text x=\"{tx}\" y=\"{y}\">{l}</text>",
            ry = y - 10.0,
            c = escape(colour),
            tx = x + 16.0,
            l = escape(label)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_axis_and_labels_are_escaped() {
        let chart = BarChart {
            title: "a < b".into(),
            bars: vec![
                Bar {
                    label: "x&y".into(),
                    value: 0.9,
                    error: Some(0.05),
                    colour: "#123456".into(),
                },
                Bar {
                    label: "low".into(),
                    value: 0.1,
                    error: None,
                    colour: "red".into(),
                },
            ],
            min: 0.8,
            max: 1.0,
            reference: Some(("ref".into(), 0.95)),
            legend: vec![("early".into(), "red".into())],
        };
        let svg = chart.svg();
        assert!(svg.contains("a &lt; b") && svg.contains("x&amp;y"));
        // 0.9 is half-way along 0.8..1.0; 0.1 is below the axis: an empty bar.
        assert!(
            svg.contains(&format!("width=\"{:.1}\"", WIDTH / 2.0)),
            "{svg}"
        );
        assert!(svg.contains("width=\"0.0\""));
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn lines_skip_non_finite_points() {
        let chart = LineChart {
            title: "loss".into(),
            x_label: "epoch".into(),
            series: vec![(
                "train".into(),
                "blue".into(),
                vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)],
            )],
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(!svg.contains("NaN"));
        assert_eq!(svg.matches(',').count(), 2, "{svg}");
    }
}
