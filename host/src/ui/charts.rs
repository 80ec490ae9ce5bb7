//! Charts as SVG geometry computed here and drawn by the templates: the milestone funnel's
//! bars, and the observed paths' flow between milestones. Pure functions of the report, so
//! they are tested without a browser; the templates only place the shapes and escape labels.

use serde::Serialize;
use std::collections::BTreeMap;
use waymark_api::reports::{Funnel, PathCount};

/// The funnel chart's drawing width, in SVG units.
const FUNNEL_WIDTH: f64 = 720.0;
const LABEL_WIDTH: f64 = 170.0;
const VALUE_WIDTH: f64 = 150.0;
const ROW: f64 = 38.0;

/// One bar of the funnel: the entered customers, then each milestone in declared order.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub label: String,
    pub reached: u64,
    /// Share of entered customers who reached it.
    pub conversion: Option<f64>,
    pub median_ms: Option<i64>,
    pub goal: bool,
    pub y: f64,
    pub width: f64,
}

#[derive(Debug, Serialize)]
pub struct FunnelChart {
    pub width: f64,
    pub height: f64,
    pub bar_x: f64,
    pub value_x: f64,
    pub row: f64,
    pub bars: Vec<Bar>,
}

/// The funnel of `funnel` as horizontal bars scaled to the entered count.
pub fn funnel(funnel: &Funnel, goal: Option<&str>) -> FunnelChart {
    let span = FUNNEL_WIDTH - LABEL_WIDTH - VALUE_WIDTH;
    let scale = |n: u64| {
        if funnel.entered == 0 {
            0.0
        } else {
            (n as f64 / funnel.entered as f64 * span).max(if n > 0 { 2.0 } else { 0.0 })
        }
    };
    let mut bars = vec![Bar {
        label: "entered".into(),
        reached: funnel.entered,
        conversion: (funnel.entered > 0).then_some(1.0),
        median_ms: None,
        goal: false,
        y: 0.0,
        width: scale(funnel.entered),
    }];
    for (i, m) in funnel.milestones.iter().enumerate() {
        bars.push(Bar {
            label: m.name.clone(),
            reached: m.reached,
            conversion: m.conversion,
            median_ms: m.median_time_to_reach_ms,
            goal: goal == Some(m.name.as_str()),
            y: (i + 1) as f64 * ROW,
            width: scale(m.reached),
        });
    }
    FunnelChart {
        width: FUNNEL_WIDTH,
        height: bars.len() as f64 * ROW,
        bar_x: LABEL_WIDTH,
        value_x: LABEL_WIDTH + span + 8.0,
        row: ROW,
        bars,
    }
}

const NODE_W: f64 = 120.0;
const NODE_H: f64 = 34.0;
const GAP: f64 = 56.0;

/// A step of the flow diagram: `entered`, then the milestones in declared order, then any
/// milestone observed but not declared (a journey's older version, say).
#[derive(Debug, Serialize)]
pub struct Node {
    pub label: String,
    pub declared: bool,
    pub x: f64,
    pub y: f64,
}

/// Customers who went from one step straight to another, as a curve (`d` is an SVG path).
#[derive(Debug, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub customers: u64,
    pub d: String,
    pub stroke: f64,
    pub label_x: f64,
    pub label_y: f64,
    pub backwards: bool,
}

#[derive(Debug, Serialize)]
pub struct Flow {
    pub width: f64,
    pub height: f64,
    pub node_w: f64,
    pub node_h: f64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// The observed paths as transitions between steps: adjacent steps in declared order are
/// joined straight; a skip arcs above, a step back arcs below, higher the farther it goes.
pub fn flow(declared: &[String], paths: &[PathCount]) -> Flow {
    let mut labels: Vec<(String, bool)> = vec![("entered".into(), true)];
    labels.extend(declared.iter().map(|m| (m.clone(), true)));
    for p in paths {
        for step in &p.path {
            if !labels.iter().any(|(l, _)| l == step) {
                labels.push((step.clone(), false));
            }
        }
    }
    let column = |label: &str| labels.iter().position(|(l, _)| l == label).unwrap_or(0);
    let mut counts: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for p in paths {
        let mut at = 0;
        for step in &p.path {
            let next = column(step);
            *counts.entry((at, next)).or_default() += p.customers;
            at = next;
        }
    }
    let most = counts.values().copied().max().unwrap_or(1).max(1) as f64;
    let longest = counts
        .keys()
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let arc = |span: usize| 26.0 + 22.0 * (span as f64 - 1.0).max(0.0);
    let top = arc(longest as usize) * 0.8 + 24.0;
    let mid = top + NODE_H / 2.0;
    let nodes: Vec<Node> = labels
        .iter()
        .enumerate()
        .map(|(i, (label, declared))| Node {
            label: label.clone(),
            declared: *declared,
            x: 12.0 + i as f64 * (NODE_W + GAP),
            y: top,
        })
        .collect();
    let edges = counts
        .iter()
        .map(|(&(a, b), &customers)| {
            let stroke = 2.0 + 12.0 * customers as f64 / most;
            let (xa, xb) = (nodes[a].x, nodes[b].x);
            let backwards = b <= a;
            let (d, label_x, label_y) = if b == a + 1 {
                let (x1, x2) = (xa + NODE_W, xb);
                (
                    format!("M{x1:.1} {mid:.1} L{x2:.1} {mid:.1}"),
                    (x1 + x2) / 2.0,
                    mid - stroke / 2.0 - 5.0,
                )
            } else {
                let h = arc(a.abs_diff(b).max(1));
                let (x1, x2) = (xa + NODE_W / 2.0, xb + NODE_W / 2.0);
                let (y, dir) = if backwards {
                    (top + NODE_H, 1.0)
                } else {
                    (top, -1.0)
                };
                let c = y + dir * h;
                (
                    format!("M{x1:.1} {y:.1} C{x1:.1} {c:.1} {x2:.1} {c:.1} {x2:.1} {y:.1}"),
                    (x1 + x2) / 2.0,
                    y + dir * h * 0.75 + if backwards { 14.0 } else { -6.0 },
                )
            };
            Edge {
                from: labels[a].0.clone(),
                to: labels[b].0.clone(),
                customers,
                d,
                stroke,
                label_x,
                label_y,
                backwards,
            }
        })
        .collect();
    let width = 24.0 + labels.len() as f64 * (NODE_W + GAP) - GAP;
    Flow {
        width,
        height: top + NODE_H + arc(longest as usize) * 0.8 + 24.0,
        node_w: NODE_W,
        node_h: NODE_H,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_api::reports::MilestoneStats;

    fn milestone(name: &str, reached: u64) -> MilestoneStats {
        MilestoneStats {
            name: name.into(),
            reached,
            conversion: Some(reached as f64 / 10.0),
            median_time_to_reach_ms: None,
            stalled_now: 0,
            stalled_ever: 0,
        }
    }

    #[test]
    fn bars_scale_to_the_entered_count() {
        let f = Funnel {
            entered: 10,
            milestones: vec![milestone("a", 5), milestone("b", 0)],
            ..Funnel::default()
        };
        let chart = funnel(&f, Some("b"));
        let widths: Vec<f64> = chart.bars.iter().map(|b| b.width).collect();
        let full = FUNNEL_WIDTH - LABEL_WIDTH - VALUE_WIDTH;
        assert_eq!(widths, vec![full, full / 2.0, 0.0]);
        assert!(chart.bars[2].goal);
        assert_eq!(chart.bars[1].reached, 5);
    }

    #[test]
    fn paths_become_transitions_counted_by_customers() {
        let declared = vec!["a".to_string(), "b".to_string()];
        let paths = vec![
            PathCount {
                path: vec!["a".into(), "b".into()],
                customers: 3,
            },
            PathCount {
                path: vec!["b".into(), "a".into()],
                customers: 1,
            },
            PathCount {
                path: vec!["x".into()],
                customers: 2,
            },
        ];
        let flow = flow(&declared, &paths);
        let labels: Vec<&str> = flow.nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(labels, ["entered", "a", "b", "x"]);
        assert!(!flow.nodes[3].declared);
        let edge = |from: &str, to: &str| {
            flow.edges
                .iter()
                .find(|e| e.from == from && e.to == to)
                .map(|e| (e.customers, e.backwards))
        };
        assert_eq!(edge("entered", "a"), Some((3, false)));
        assert_eq!(edge("a", "b"), Some((3, false)));
        assert_eq!(edge("entered", "b"), Some((1, false)));
        assert_eq!(edge("b", "a"), Some((1, true)));
        assert_eq!(edge("entered", "x"), Some((2, false)));
    }
}
