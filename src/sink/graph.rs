//! The dependency graph of the live page, drawn as SVG: services and messaging
//! destinations as nodes, calls and messages as edges with their rate and error
//! share, a destination whose messages nobody consumed in the error colour, and
//! peers called without being traced (virtual nodes) in grey.
//!
//! The layout (ranks, crossing reduction, edge routing) is layout-rs's, a
//! Graphviz-style layered layout in Rust; poirot only says what to draw.

use crate::analysis::edges::ServiceEdgeRow;
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::BTreeMap;

/// What the graph shows, gathered from the snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// Service → service calls (not through a destination).
    pub calls: Vec<Edge>,
    /// Producer service → destination and destination → consumer service.
    pub messages: Vec<Edge>,
    /// Producer service → destination: messages nobody consumed (reported losses, net of resolved).
    pub lost: Vec<Edge>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Edge {
    pub from: Node,
    pub to: Node,
    /// Calls or messages in all.
    pub count: u64,
    pub errors: u64,
    /// Per second over the page's rate window, when known.
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Node {
    Service(String),
    Destination(String),
    /// A peer that was called and sent no spans.
    Virtual(String),
    #[default]
    None,
}

impl Model {
    /// `rates`: calls per second of each (source, target) service edge over the window.
    pub fn of(
        edges: &[ServiceEdgeRow],
        losses: &[(String, String, u64)],
        rates: &BTreeMap<crate::sink::live::EdgeKey, f64>,
    ) -> Model {
        let mut m = Model::default();
        // Messages per (producer, destination), and their rate when every consumer's is known.
        let mut produced: BTreeMap<(String, String), (u64, Option<f64>)> = BTreeMap::new();
        for e in edges {
            let rate = rates.get(&(e.source.clone(), e.target.clone(), e.virtual_node)).copied();
            let via: Vec<_> = e.destinations.iter().filter(|d| !d.destination.is_empty()).collect();
            if via.is_empty() {
                let to = if e.virtual_node {
                    Node::Virtual(e.target.clone())
                } else {
                    Node::Service(e.target.clone())
                };
                m.calls.push(Edge {
                    from: Node::Service(e.source.clone()),
                    to,
                    count: e.stats.calls,
                    errors: e.stats.errors,
                    rate,
                });
                continue;
            }
            let single = e.destinations.len() == 1;
            for d in via {
                let rate = rate.filter(|_| single);
                let p = produced.entry((e.source.clone(), d.destination.clone())).or_insert((0, Some(0.0)));
                p.0 += d.stats.messages;
                p.1 = p.1.zip(rate).map(|(a, b)| a + b);
                m.messages.push(Edge {
                    from: Node::Destination(d.destination.clone()),
                    to: Node::Service(e.target.clone()),
                    count: d.stats.messages,
                    errors: e.stats.errors,
                    rate,
                });
            }
        }
        for ((producer, destination), (n, rate)) in produced {
            m.messages.push(Edge {
                from: Node::Service(producer),
                to: Node::Destination(destination),
                count: n,
                rate,
                ..Edge::default()
            });
        }
        for (producer, destination, n) in losses.iter().filter(|l| l.2 > 0) {
            m.lost.push(Edge {
                from: Node::Service(producer.clone()),
                to: Node::Destination(destination.clone()),
                count: *n,
                errors: *n,
                rate: None,
            });
        }
        m
    }

    fn nodes(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self
            .calls
            .iter()
            .chain(&self.messages)
            .chain(&self.lost)
            .flat_map(|e| [&e.from, &e.to])
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Destinations with reported losses and no consumer at all.
    fn unconsumed(&self, d: &str) -> bool {
        let lost = self.lost.iter().any(|e| matches!(&e.to, Node::Destination(x) if x == d));
        let consumed = self.messages.iter().any(|e| matches!(&e.from, Node::Destination(x) if x == d));
        lost && !consumed
    }
}

const INK: u32 = 0x37474fff;
const SERVICE_FILL: u32 = 0xe3f2fdff;
const SERVICE_LINE: u32 = 0x1565c0ff;
const DESTINATION_FILL: u32 = 0xfff8e1ff;
const DESTINATION_LINE: u32 = 0xef6c00ff;
const ERROR: u32 = 0xc62828ff;
const VIRTUAL_LINE: u32 = 0x78909cff;
const VIRTUAL_FILL: u32 = 0xeceff1ff;
const ERROR_FILL: u32 = 0xffebeeff;

fn label(e: &Edge, what: &str) -> String {
    let mut s = match e.rate {
        Some(r) => format!("{r:.1}/s"),
        None => format!("{} {what}", crate::model::text::thousands(e.count)),
    };
    if e.errors > 0 && e.count > 0 {
        s.push_str(&format!(" · {:.1}% err", 100.0 * e.errors as f64 / e.count as f64));
    }
    s
}

fn attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Draws the model; an empty graph says why it is empty.
pub fn render(m: &Model) -> String {
    let nodes = m.nodes();
    if nodes.is_empty() {
        return r##"<svg xmlns="http://www.w3.org/2000/svg" width="520" height="40"><text x="10" y="24" fill="#777" font-family="sans-serif" font-size="13">No dependencies yet: a trace is analysed when it closes, after the inactivity gap.</text></svg>"##.to_owned();
    }
    // The layout library is not poirot's: should it fail on some graph, the page
    // says so instead of the pipeline thread or the web server going down.
    std::panic::catch_unwind(|| layout_svg(m, &nodes)).unwrap_or_else(|_| {
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="520" height="40"><text x="10" y="24" fill="#c62828" font-family="sans-serif" font-size="13">The graph could not be laid out; the tables below have its edges.</text></svg>"##.to_owned()
    })
}

fn layout_svg(m: &Model, nodes: &[&Node]) -> String {
    let dir = Orientation::LeftToRight;
    let mut vg = VisualGraph::new(dir);
    let mut handles = BTreeMap::new();
    for n in nodes {
        let (shape, look, props) = match n {
            Node::Service(s) => (
                ShapeKind::new_box(s),
                StyleAttr::new(Color::new(SERVICE_LINE), 2, Some(Color::new(SERVICE_FILL)), 8, 14),
                format!(r#"class="node service" data-name="{}""#, attr(s)),
            ),
            Node::Destination(d) => {
                let lost = m.unconsumed(d);
                let (line, fill) =
                    if lost { (ERROR, ERROR_FILL) } else { (DESTINATION_LINE, DESTINATION_FILL) };
                let class = if lost { "node destination unconsumed" } else { "node destination" };
                let text = if lost { format!("{d}\n(nobody consumes)") } else { d.clone() };
                (
                    ShapeKind::new_circle(&text),
                    StyleAttr::new(Color::new(line), 2, Some(Color::new(fill)), 0, 13),
                    format!(r#"class="{class}" data-name="{}""#, attr(d)),
                )
            }
            Node::Virtual(v) => (
                ShapeKind::new_box(&format!("{v}\n(not traced)")),
                StyleAttr::new(Color::new(VIRTUAL_LINE), 2, Some(Color::new(VIRTUAL_FILL)), 8, 13),
                format!(r#"class="node virtual" data-name="{}""#, attr(v)),
            ),
            Node::None => continue,
        };
        let width = match n {
            Node::Service(s) | Node::Destination(s) => (s.chars().count() as f64 * 8.5 + 30.0).max(90.0),
            // "(not traced)" is 12 characters.
            Node::Virtual(s) => (s.chars().count().max(12) as f64 * 8.5 + 30.0).max(90.0),
            Node::None => 90.0,
        };
        let size = Point::new(width, 44.0);
        handles.insert(
            (*n).clone(),
            vg.add_node(Element::create_with_properties(shape, look, dir, size, props)),
        );
    }
    let edge = |text: String, color: u32, dashed: bool, class: &str| {
        let style = if dashed { LineStyleKind::Dashed } else { LineStyleKind::Normal };
        let look = StyleAttr::new(Color::new(color), 2, None, 0, 12);
        let mut a = Arrow::new(LineEndKind::None, LineEndKind::Arrow, style, &text, &look, &None, &None);
        a.properties = Some(format!(r#"class="edge {class}""#));
        a
    };
    for e in &m.calls {
        let color = if e.errors > 0 { ERROR } else { INK };
        if let (Some(&a), Some(&b)) = (handles.get(&e.from), handles.get(&e.to)) {
            vg.add_edge(edge(label(e, "calls"), color, false, "call"), a, b);
        }
    }
    for e in &m.messages {
        let color = if e.errors > 0 { ERROR } else { DESTINATION_LINE };
        if let (Some(&a), Some(&b)) = (handles.get(&e.from), handles.get(&e.to)) {
            vg.add_edge(edge(label(e, "msgs"), color, true, "message"), a, b);
        }
    }
    for e in &m.lost {
        let text = format!("{} lost", crate::model::text::thousands(e.count));
        if let (Some(&a), Some(&b)) = (handles.get(&e.from), handles.get(&e.to)) {
            vg.add_edge(edge(text, ERROR, true, "lost"), a, b);
        }
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    let svg = svg.finalize();
    // An element to put in a page, not a document: no XML declaration.
    match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::edges::{CallStats, HopRow, HopStats};

    fn row(source: &str, target: &str, calls: u64, errors: u64, via: &[&str]) -> ServiceEdgeRow {
        ServiceEdgeRow {
            source: source.into(),
            target: target.into(),
            relation: "child_of",
            virtual_node: false,
            stats: CallStats { calls, errors, ..CallStats::default() },
            destinations: via
                .iter()
                .map(|d| HopRow {
                    destination: (*d).into(),
                    stats: HopStats { messages: calls, ..HopStats::default() },
                })
                .collect(),
        }
    }

    #[test]
    fn destinations_are_nodes_and_an_unconsumed_one_is_drawn_as_an_error() {
        let edges = [
            row("frontend", "backend", 100, 3, &[]),
            row("Publisher", "SandboxAnalyser", 40, 0, &["SAMPLE_RECEIVED"]),
        ];
        let losses = [("SandboxAnalyser".to_owned(), "SANDBOX_RESULT".to_owned(), 40)];
        let rates = BTreeMap::from([(("frontend".to_owned(), "backend".to_owned(), false), 2.5)]);
        let m = Model::of(&edges, &losses, &rates);
        assert_eq!(m.calls.len(), 1);
        assert_eq!(m.messages.len(), 2, "producer → destination → consumer");
        let svg = render(&m);
        assert!(svg.contains(r#"class="node destination unconsumed" data-name="SANDBOX_RESULT""#), "{svg}");
        assert!(svg.contains(r#"class="node destination" data-name="SAMPLE_RECEIVED""#));
        assert!(svg.contains("2.5/s · 3.0% err"), "{svg}");
        assert!(svg.contains("40 lost"));
        assert!(svg.contains("nobody consumes"));
    }

    #[test]
    fn thirty_services_with_cycles_and_odd_names_lay_out() {
        let mut edges = Vec::new();
        for i in 0..30 {
            edges.push(row(&format!("svc-{i}"), &format!("svc-{}", (i * 7 + 3) % 30), 10, 0, &[]));
            edges.push(row(&format!("svc-{i}"), "db <&\"quoted\">", 5, 1, &[]));
        }
        edges.push(row("svc-1", "svc-2", 1, 0, &["queue"]));
        edges.push(row("svc-2", "svc-1", 1, 0, &["queue"]));
        let svg = render(&Model::of(&edges, &[], &BTreeMap::new()));
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("svc-29"));
        assert!(svg.contains("db &lt;&amp;&quot;quoted&quot;&gt;"), "names are escaped");
        assert!(!svg.contains("could not be laid out"));
    }
}
