//! Checks across jobs: `needs` targets, self-dependencies, cycles, and the scope of every
//! `${{ }}` reference (a job may only read what it `needs`, its own matrix and item,
//! declared inputs and event fields; status functions only in `if:`).
//!
//! A job with problems of its own is still a job here (`needs` may name it, and its
//! expressions are checked); only a reference to an output of a job whose `outputs:`
//! was wrong (`unsure_outputs`) is not reported, since it may be right.

use crate::diagnostic::{Code, Diagnostic, suggest};
use crate::expr::{Expr, Reference, Root, Segment};
use crate::model::{ForEach, Job, JobId, Pipeline, Text};
use crate::parse::locate;
use crate::source::Span;
use indexmap::IndexSet;
// Kosaraju over petgraph's iterative `Dfs`: `tarjan_scc` recurses once per node of a chain.
use petgraph::algo::kosaraju_scc;
use petgraph::graphmap::DiGraphMap;

pub(crate) fn check(
    pipeline: &Pipeline,
    unsure_outputs: &IndexSet<JobId>,
    src: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let ids: Vec<&str> = pipeline.jobs.keys().map(JobId::as_str).collect();
    let mut graph: DiGraphMap<usize, ()> = DiGraphMap::new();
    for index in 0..pipeline.jobs.len() {
        graph.add_node(index);
    }
    for (index, job) in pipeline.jobs.values().enumerate() {
        for need in &job.needs {
            if need.value == job.id {
                diags.push(
                    Diagnostic::new(
                        Code::SelfDependency,
                        need.span,
                        format!("job `{}` needs itself", job.id),
                        "self-dependency",
                    )
                    .help("remove it from its own `needs`"),
                );
                continue;
            }
            match pipeline.jobs.get_index_of(need.value.as_str()) {
                Some(dep) => {
                    graph.add_edge(dep, index, ());
                }
                None => diags.push(
                    Diagnostic::new(
                        Code::UnknownNeed,
                        need.span,
                        format!(
                            "job `{}` needs `{}`, which is not a job",
                            job.id, need.value
                        ),
                        "unknown job",
                    )
                    .help(suggest(need.value.as_str(), &ids, "the jobs")),
                ),
            }
        }
    }
    if !cycles(pipeline, &graph, diags) {
        depth(pipeline, &graph, diags);
    }
    let scope = Scope::top(pipeline, unsure_outputs);
    for text in pipeline.env.values() {
        scope.text(text, "the pipeline's `env`", src, diags);
    }
    for job in pipeline.jobs.values() {
        let scope = Scope::job(pipeline, unsure_outputs, job);
        let context = format!("job `{}`", job.id);
        scope.text(&job.run, &context, src, diags);
        for text in job.env.values() {
            scope.text(text, &context, src, diags);
        }
        if let Some(ForEach::Dynamic { text, .. }) = &job.for_each {
            let scope = Scope {
                item: false,
                ..scope
            };
            scope.text(text, &context, src, diags);
        }
        if let Some(condition) = &job.condition {
            let at = |span: crate::expr::Span| {
                locate(
                    src,
                    condition.span,
                    &condition.raw,
                    crate::expr::Span {
                        offset: span.offset + condition.offset,
                        len: span.len,
                    },
                )
            };
            let scope = Scope {
                in_if: true,
                ..scope
            };
            scope.expr(&condition.expr, &context, &at, diags);
        }
    }
}

/// The longest chain of `needs` a pipeline may have (DESIGN §8: DAG depth has a limit).
/// Every walk over the DAG iterates, so this is not about the stack: a chain this long
/// runs one job at a time for hours, and is far past any real pipeline.
pub const MAX_NEEDS_DEPTH: usize = 1000;

/// Refuses a `needs` chain longer than [`MAX_NEEDS_DEPTH`], at its last job. Kahn's
/// algorithm over the acyclic graph: a loop, whatever the depth.
fn depth(pipeline: &Pipeline, graph: &DiGraphMap<usize, ()>, diags: &mut Vec<Diagnostic>) {
    let n = pipeline.jobs.len();
    let mut indegree: Vec<usize> = (0..n)
        .map(|i| {
            graph
                .neighbors_directed(i, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut depth = vec![1usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = ready.pop() {
        for d in graph.neighbors(i) {
            depth[d] = depth[d].max(depth[i] + 1);
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(d);
            }
        }
    }
    let Some((deepest, &longest)) = depth.iter().enumerate().max_by_key(|(_, d)| **d) else {
        return;
    };
    if longest <= MAX_NEEDS_DEPTH {
        return;
    }
    let Some((id, job)) = pipeline.jobs.get_index(deepest) else {
        return;
    };
    diags.push(
        Diagnostic::new(
            Code::TooDeep,
            job.span,
            format!(
                "job `{id}` ends a chain of {longest} jobs, each needing the one before; at most {MAX_NEEDS_DEPTH} are allowed"
            ),
            "the end of the chain",
        )
        .help(format!(
            "a `needs` chain may be at most {MAX_NEEDS_DEPTH} jobs deep; let independent jobs run side by side, or merge steps into one job"
        )),
    );
}

/// Reports one cycle per strongly connected component, as `a → b → c → a`; whether
/// there was one.
fn cycles(pipeline: &Pipeline, graph: &DiGraphMap<usize, ()>, diags: &mut Vec<Diagnostic>) -> bool {
    let mut components = kosaraju_scc(graph);
    components.retain(|c| c.len() > 1);
    let found = !components.is_empty();
    components.sort_by_key(|c| c.iter().copied().min());
    for component in components {
        let Some(&start) = component.iter().min() else {
            continue;
        };
        let path = cycle_path(graph, &component, start);
        let name = |i: usize| {
            pipeline
                .jobs
                .get_index(i)
                .map_or("?", |(id, _)| id.as_str())
        };
        let mut text: Vec<&str> = path.iter().map(|&i| name(i)).collect();
        text.push(name(start));
        // Point at the `needs` entry that closes the cycle, and name each edge.
        let closing = path.last().copied().unwrap_or(start);
        let need_span = |dependent: usize, dependency: usize| -> Option<Span> {
            let (_, job) = pipeline.jobs.get_index(dependent)?;
            let dep = name(dependency);
            job.needs
                .iter()
                .find(|n| n.value.as_str() == dep)
                .map(|n| n.span)
        };
        // Edges run dependency → dependent, so `a → b` means b needs a.
        let span = need_span(start, closing).unwrap_or_default();
        let mut d = Diagnostic::new(
            Code::Cycle,
            span,
            format!("dependency cycle: {}", text.join(" → ")),
            format!(
                "`{}` needs `{}`, closing the cycle",
                name(start),
                name(closing)
            ),
        )
        .help("jobs in `needs` must form a DAG; remove one of these `needs` entries");
        for pair in path.windows(2) {
            if let Some(s) = need_span(pair[1], pair[0]) {
                d = d.related(s, format!("`{}` needs `{}`", name(pair[1]), name(pair[0])));
            }
        }
        diags.push(d);
    }
    found
}

/// A path start → … → last inside one component whose last node has an edge back to start.
fn cycle_path(graph: &DiGraphMap<usize, ()>, component: &[usize], start: usize) -> Vec<usize> {
    // Breadth-first search for the shortest way back to `start`.
    let mut previous: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<usize> = graph
            .neighbors(node)
            .filter(|n| component.contains(n))
            .collect();
        next.sort_unstable();
        for n in next {
            if n == start {
                let mut path = vec![node];
                let mut at = node;
                while let Some(&p) = previous.get(&at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return path;
            }
            if n != start && !previous.contains_key(&n) {
                previous.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    vec![start]
}

/// What expressions in one place may refer to.
#[derive(Clone, Copy)]
struct Scope<'p> {
    pipeline: &'p Pipeline,
    unsure_outputs: &'p IndexSet<JobId>,
    job: Option<&'p Job>,
    item: bool,
    in_if: bool,
}

impl<'p> Scope<'p> {
    fn top(pipeline: &'p Pipeline, unsure_outputs: &'p IndexSet<JobId>) -> Self {
        Self {
            pipeline,
            unsure_outputs,
            job: None,
            item: false,
            in_if: false,
        }
    }

    fn job(pipeline: &'p Pipeline, unsure_outputs: &'p IndexSet<JobId>, job: &'p Job) -> Self {
        Self {
            pipeline,
            unsure_outputs,
            job: Some(job),
            item: job.for_each.is_some(),
            in_if: false,
        }
    }

    fn text(&self, text: &Text, context: &str, src: &str, diags: &mut Vec<Diagnostic>) {
        for segment in &text.template.segments {
            if let Segment::Expr {
                expr, inner_offset, ..
            } = segment
            {
                let at = |span: crate::expr::Span| {
                    locate(
                        src,
                        text.span,
                        &text.raw,
                        crate::expr::Span {
                            offset: span.offset + inner_offset,
                            len: span.len,
                        },
                    )
                };
                self.expr(expr, context, &at, diags);
            }
        }
    }

    fn expr(
        &self,
        expr: &Expr,
        context: &str,
        at: &dyn Fn(crate::expr::Span) -> Span,
        diags: &mut Vec<Diagnostic>,
    ) {
        if !self.in_if {
            expr.walk(&mut |e| {
                if let Expr::Call { func, span, .. } = e
                    && func.is_status()
                {
                    diags.push(
                        Diagnostic::new(
                            Code::StatusOutsideIf,
                            at(*span),
                            format!("`{}()` in {context} can only be used in `if:`", func.name()),
                            "status function outside `if:`",
                        )
                        .help("move the condition to the job's `if:`"),
                    );
                }
            });
        }
        for reference in expr.references() {
            if let Some(d) = self.reference(reference, context, at) {
                diags.push(d);
            }
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one arm per reference root, each with its own help"
    )]
    fn reference(
        &self,
        r: &Reference,
        context: &str,
        at: &dyn Fn(crate::expr::Span) -> Span,
    ) -> Option<Diagnostic> {
        let span = at(r.span);
        match r.root {
            Root::Event => None,
            Root::Inputs => {
                let name = r.input_name()?;
                let declared: Vec<&str> = self
                    .pipeline
                    .on
                    .workflow_dispatch
                    .as_ref()
                    .map(|w| w.inputs.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if declared.contains(&name) {
                    return None;
                }
                let help = if declared.is_empty() {
                    format!(
                        "declare it under `on.workflow_dispatch.inputs`, e.g. `inputs: {{ {name}: {{ default: \"\" }} }}`"
                    )
                } else {
                    suggest(name, &declared, "the declared inputs")
                };
                Some(
                    Diagnostic::new(
                        Code::UnknownInput,
                        span,
                        format!("`{r}` in {context} refers to an undeclared input"),
                        "undeclared input",
                    )
                    .help(help),
                )
            }
            Root::Needs => {
                let Some(job) = self.job else {
                    return Some(Diagnostic::new(Code::NotInNeeds, span, format!("`{r}` cannot be used in {context}"), "no jobs have run here").help("the pipeline's `env` is read before any job runs; move this to a job's `env`"));
                };
                let target = r.job()?;
                if !job.needs.iter().any(|n| n.value.as_str() == target) {
                    let ids: Vec<&str> = self.pipeline.jobs.keys().map(JobId::as_str).collect();
                    if !ids.contains(&target) {
                        return Some(
                            Diagnostic::new(
                                Code::UnknownNeed,
                                span,
                                format!(
                                    "`{r}` in {context} refers to `{target}`, which is not a job"
                                ),
                                "unknown job",
                            )
                            .help(suggest(target, &ids, "the jobs")),
                        );
                    }
                    return Some(
                        Diagnostic::new(Code::NotInNeeds, span, format!("`{r}` in {context} refers to job `{target}`, which is not in its `needs`"), "not in `needs`")
                            .help(format!("add `{target}` to `needs` of job `{}`", job.id)),
                    );
                }
                let output = r.output_name()?;
                let producer = self.pipeline.jobs.get(target)?;
                if producer.outputs.contains_key(output) || self.unsure_outputs.contains(target) {
                    return None;
                }
                let declared: Vec<&str> = producer.outputs.keys().map(String::as_str).collect();
                let help = if declared.is_empty() {
                    format!(
                        "declare it on job `{target}`: `outputs: {{ {output}: file }}` (or `stdout`, `stdout-json`)"
                    )
                } else {
                    suggest(output, &declared, &format!("the outputs of `{target}`"))
                };
                Some(
                    Diagnostic::new(
                        Code::UnknownOutput,
                        span,
                        format!("`{r}` in {context}: job `{target}` has no output `{output}`"),
                        "undeclared output",
                    )
                    .help(help),
                )
            }
            Root::Matrix => {
                let key = r.matrix_key()?;
                let keys: Vec<&str> = self
                    .job
                    .map(|j| j.matrix.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if keys.contains(&key) {
                    return None;
                }
                let help = if keys.is_empty() {
                    "add a `matrix:` with this axis to the job".to_owned()
                } else {
                    suggest(key, &keys, "the matrix axes")
                };
                Some(
                    Diagnostic::new(
                        Code::UnknownMatrixKey,
                        span,
                        format!("`{r}` in {context} names no axis of the job's `matrix`"),
                        "unknown matrix axis",
                    )
                    .help(help),
                )
            }
            Root::Item => (!self.item).then(|| {
                Diagnostic::new(
                    Code::ItemOutsideForEach,
                    span,
                    format!("`item` in {context} is only defined in a job with `for_each`"),
                    "no `for_each` here",
                )
                .help("add `for_each:` to the job, or read the value another way")
            }),
        }
    }
}
