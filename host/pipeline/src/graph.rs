//! From a split document to a planned graph: component declarations, input resolution, cycle
//! detection, topological order, schema propagation and dead-letter wiring.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::SpecIssue;
use weir_config::yaml::{Document, Node, Spanned};
use weir_engine::component::{Partitioning, PlanContext, SinkSpec, SourceSpec, TransformSpec};
use weir_engine::errors::{ErrorPolicy, dead_letter_schema};
use weir_engine::graph::Role;
use weir_engine::graph::{InputRef, PlannedComponent, Port, Runnable};
use weir_engine::key_group::KEY_GROUPS;
use weir_engine::registry::{Registry, Supports};

/// The options every component may have ([`weir_engine::registry::SHARED_OPTIONS`]), read here once; kinds' typed
/// configs never see them, and [`Supports`] says which a kind takes.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    inputs: Option<Spanned<Vec<Spanned<String>>>>,
    parallelism: Option<Spanned<usize>>,
    on_error: Option<Spanned<ErrorPolicy>>,
    dead_letter: Option<Spanned<String>>,
    event_time: Option<Spanned<weir_engine::event_time::EventTimeConfig>>,
}

impl Common {
    /// The `inputs` (none when not given).
    fn inputs(&self) -> &[Spanned<String>] {
        self.inputs.as_ref().map_or(&[], |inputs| &inputs.value)
    }

    /// The `on_error` policy (`fail` when not given).
    fn on_error(&self) -> ErrorPolicy {
        self.on_error.as_ref().map_or(ErrorPolicy::Fail, |policy| policy.value)
    }

    /// Refuses the shared options the kind does not take, naming the option, the kind and why.
    fn check(&self, role: Role, kind: &str, supports: Supports) -> Result<(), SpecIssue> {
        let refuse = |at: &weir_config::yaml::Location, option: &str, why: &str| {
            Err(SpecIssue::at(at, format!("`{option}` is not an option of {} type `{kind}`: {why}", role_name(role))))
        };
        if let Some(inputs) = &self.inputs
            && role == Role::Source
        {
            return refuse(&inputs.referenced, "inputs", "sources read from outside the pipeline");
        }
        if let Some(parallelism) = &self.parallelism
            && !supports.parallelism
        {
            let why = match role {
                Role::Source => "a source's subtasks follow its system (partitions, files) or its own options",
                _ => "it runs as one subtask",
            };
            return refuse(&parallelism.referenced, "parallelism", why);
        }
        if let Some(event_time) = &self.event_time
            && !supports.event_time
        {
            return refuse(&event_time.referenced, "event_time", "event time is assigned where rows enter, at sources");
        }
        if let Some(policy) = &self.on_error {
            if policy.value == ErrorPolicy::Retry && !supports.retry {
                let message = match role {
                    Role::Transform => format!(
                        "`on_error: retry` is for steps that wait on an external system (lookup_join); a `{kind}` \
                         cannot succeed by trying again"
                    ),
                    _ => "`on_error: retry` is for lookup joins; sources and sinks already retry transient failures \
                          and apply `on_error` to records that cannot succeed"
                        .to_owned(),
                };
                return Err(SpecIssue::at(&policy.referenced, message));
            }
            if !supports.errors {
                let why = match role {
                    Role::Source => "it makes every record itself, so none can be bad",
                    Role::Transform => "it has no rows that fail on their own (an expression error fails the job)",
                    Role::Sink => "it has no rows its destination can reject",
                };
                return refuse(&policy.referenced, "on_error", why);
            }
        }
        if let Some(target) = &self.dead_letter
            && !supports.errors
        {
            return refuse(&target.referenced, "dead_letter", "it has no `on_error` policy");
        }
        Ok(())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Transform => "transform",
        Role::Sink => "sink",
    }
}

/// A component's typed config.
#[derive(Debug)]
pub enum Spec {
    /// A source.
    Source(Box<dyn SourceSpec>),
    /// A transform.
    Transform(Box<dyn TransformSpec>),
    /// A sink.
    Sink(Box<dyn SinkSpec>),
}

/// A component as declared, before planning.
#[derive(Debug)]
pub struct Declared {
    name: String,
    role: Role,
    kind: String,
    key_at: (u64, u64),
    common: Common,
    supports: Supports,
    spec: Spec,
}

/// Declared components in file order.
#[derive(Debug)]
pub struct DeclaredPipeline {
    /// Components in file order.
    pub components: Vec<Declared>,
    /// The registered transform types with a `.late` output (for the error naming them).
    pub late_outputs: Vec<String>,
}

type Located<T> = Result<T, (Option<String>, SpecIssue)>;

/// Types every component's options and checks names.
///
/// # Errors
/// Unknown sections or types, bad options, duplicate names; with the component's name.
pub fn declare(document: &Document, registry: &Registry) -> Located<DeclaredPipeline> {
    let mut components: Vec<Declared> = Vec::new();
    for (section, section_at, nodes) in &document.sections {
        let role = match section.as_str() {
            "sources" => Role::Source,
            "transforms" => Role::Transform,
            "sinks" => Role::Sink,
            "settings" | "plugins" | "tables" => continue, // read by `super::parse`
            other => {
                let issue = SpecIssue {
                    at: Some(*section_at),
                    message: format!(
                        "unknown section `{other}`; expected sources, transforms, sinks, tables, plugins or settings"
                    ),
                };
                return Err((None, issue));
            }
        };
        for node in nodes {
            let label = format!("{section}.{}", node.name);
            let located = |issue: SpecIssue| (Some(label.clone()), issue.or_at(node.key_at));
            if components.iter().any(|other| other.name == node.name) {
                return Err(located(SpecIssue::new(format!(
                    "the name `{}` is used twice; component names must be unique",
                    node.name
                ))));
            }
            let common: Common = node.deserialize().map_err(located)?;
            let Some(kind) = &common.kind else {
                return Err(located(SpecIssue::new("missing `type`")));
            };
            let (spec, supports) = parse_spec(registry, role, kind, &common, node).map_err(located)?;
            components.push(Declared {
                name: node.name.clone(),
                role,
                kind: kind.value.clone(),
                key_at: node.key_at,
                common,
                supports,
                spec,
            });
        }
    }
    let late_outputs =
        registry.transforms().filter(|(_, supports)| supports.late_output).map(|(name, _)| name.to_owned()).collect();
    Ok(DeclaredPipeline { components, late_outputs })
}

/// Finds the kind, refuses the shared options it does not take, then reads its own options.
fn parse_spec(
    registry: &Registry,
    role: Role,
    kind: &Spanned<String>,
    common: &Common,
    node: &Node,
) -> Result<(Spec, Supports), SpecIssue> {
    let (spec, supports) = match role {
        Role::Source => {
            let found = registry.source(kind)?;
            common.check(role, &kind.value, found.supports)?;
            (Spec::Source(found.parse(node)?), found.supports)
        }
        Role::Transform => {
            let found = registry.transform(kind)?;
            common.check(role, &kind.value, found.supports)?;
            (Spec::Transform(found.parse(node)?), found.supports)
        }
        Role::Sink => {
            let found = registry.sink(kind)?;
            common.check(role, &kind.value, found.supports)?;
            (Spec::Sink(found.parse(node)?), found.supports)
        }
    };
    Ok((spec, supports))
}

/// Resolves inputs, orders the graph and plans every component against its input schema.
///
/// # Errors
/// Missing or cyclic inputs, dead-letter wiring mistakes, schema mismatches, and every
/// component's own planning errors (unknown columns, expressions that do not type-check).
pub fn plan(declared: DeclaredPipeline, ctx: &PlanContext) -> Result<Vec<PlannedComponent>, (String, SpecIssue)> {
    let inputs = resolve_inputs(&declared)?;
    let DeclaredPipeline { components: declared, .. } = declared;
    let order = topological_order(&inputs).map_err(|cycle| {
        let names: Vec<&str> = cycle.iter().map(|&i| declared[i].name.as_str()).collect();
        let first = &declared[cycle[0]];
        (
            label(first),
            SpecIssue::new(format!("cyclic inputs: {} -> {}", names.join(" -> "), names[0])).or_at(first.key_at),
        )
    })?;

    // Plan in topological order; remap indices to the new order.
    let mut position = vec![0; declared.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    let mut declared: Vec<Option<Declared>> = declared.into_iter().map(Some).collect();
    let mut planned: Vec<PlannedComponent> = Vec::with_capacity(order.len());
    for &old in &order {
        let component = declared[old].take().expect("each component is planned once");
        let edges: Vec<InputRef> = inputs[old]
            .iter()
            .map(|input| InputRef { component: position[input.component], port: input.port })
            .collect();
        let (name, key_at) = (label(&component), component.key_at);
        let located = |issue: SpecIssue| (name.clone(), issue.or_at(key_at));
        let input = input_schema(&edges, &planned).map_err(located)?;
        planned.push(plan_component(component, edges, input, ctx).map_err(located)?);
    }
    keep_key_order(&mut planned);
    Ok(planned)
}

/// A component's label in errors: `transforms.big`.
fn label(component: &Declared) -> String {
    format!("{}.{}", section_of(component.role), component.name)
}

/// Every component's input edges by declaration index: its `inputs` (`<step>.late` for a late
/// output), plus the dead-letter edges of the components that name it as their `dead_letter`.
///
/// # Errors
/// Unknown inputs, sinks as inputs, self-loops, `.late` of a step without one, dead-letter
/// wiring mistakes, transforms and sinks without inputs.
fn resolve_inputs(pipeline: &DeclaredPipeline) -> Result<Vec<Vec<InputRef>>, (String, SpecIssue)> {
    let DeclaredPipeline { components: declared, late_outputs } = pipeline;
    let index: HashMap<&str, usize> = declared.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
    let mut inputs: Vec<Vec<InputRef>> = vec![Vec::new(); declared.len()];
    for (i, component) in declared.iter().enumerate() {
        let fail = |issue: SpecIssue| (label(component), issue.or_at(component.key_at));
        match component.role {
            Role::Source => {} // `inputs` on a source was refused with the shared options
            Role::Transform | Role::Sink => {
                for input in component.common.inputs() {
                    // `<window>.late`: the rows a window or top_n received too late.
                    let (name, port) = match input.value.rsplit_once('.') {
                        Some((name, "late")) if !index.contains_key(input.value.as_str()) => (name, Port::Late),
                        _ => (input.value.as_str(), Port::Main),
                    };
                    let upstream = *index.get(name).ok_or_else(|| {
                        let known: Vec<&str> =
                            declared.iter().filter(|c| c.role != Role::Sink).map(|c| c.name.as_str()).collect();
                        fail(SpecIssue::at(
                            &input.referenced,
                            format!(
                                "unknown input `{}`; components that can be inputs: {}",
                                input.value,
                                known.join(", ")
                            ),
                        ))
                    })?;
                    if declared[upstream].role == Role::Sink {
                        return Err(fail(SpecIssue::at(
                            &input.referenced,
                            format!("`{}` is a sink; sinks have no output", input.value),
                        )));
                    }
                    if upstream == i {
                        return Err(fail(SpecIssue::at(&input.referenced, "a component cannot read its own output")));
                    }
                    if port == Port::Late && !declared[upstream].supports.late_output {
                        return Err(fail(SpecIssue::at(
                            &input.referenced,
                            format!(
                                "`{name}` is a {}; only {} steps have a `.late` output",
                                declared[upstream].kind,
                                late_outputs.join(" and ")
                            ),
                        )));
                    }
                    inputs[i].push(InputRef { component: upstream, port });
                }
            }
        }
        match (component.common.on_error(), &component.common.dead_letter) {
            (ErrorPolicy::DeadLetter, None) => {
                return Err(fail(SpecIssue::new("`on_error: dead-letter` needs `dead_letter: <sink name>`")));
            }
            (ErrorPolicy::DeadLetter, Some(target)) => {
                let sink = index.get(target.value.as_str()).copied().filter(|&s| declared[s].role == Role::Sink);
                let sink = sink.ok_or_else(|| {
                    fail(SpecIssue::at(
                        &target.referenced,
                        format!("dead_letter `{}` is not a sink of this pipeline", target.value),
                    ))
                })?;
                inputs[sink].push(InputRef { component: i, port: Port::DeadLetter });
            }
            (_, Some(target)) => {
                return Err(fail(SpecIssue::at(
                    &target.referenced,
                    "`dead_letter` is set but `on_error` is not `dead-letter`",
                )));
            }
            (_, None) => {}
        }
    }
    for (i, component) in declared.iter().enumerate() {
        if component.role != Role::Source && inputs[i].is_empty() {
            return Err((label(component), SpecIssue::new("missing `inputs`").or_at(component.key_at)));
        }
    }

    for (i, component) in declared.iter().enumerate() {
        if component.role != Role::Source && inputs[i].is_empty() {
            return Err((label(component), SpecIssue::new("missing `inputs`").or_at(component.key_at)));
        }
    }
    Ok(inputs)
}

/// The schema a component reads: its first input's, which every other input must match (a
/// union); dead letters have the dead-letter schema, late rows their window's input schema.
///
/// # Errors
/// Inputs with different columns.
fn input_schema(edges: &[InputRef], planned: &[PlannedComponent]) -> Result<Option<SchemaRef>, SpecIssue> {
    let Some(first) = edges.first() else { return Ok(None) };
    let schema_of = |edge: &InputRef| match edge.port {
        Port::Main => planned[edge.component].schema.clone(),
        Port::DeadLetter => dead_letter_schema(),
        // Late rows are the window's input rows.
        Port::Late => planned[planned[edge.component].inputs[0].component].schema.clone(),
    };
    let schema = schema_of(first);
    for edge in &edges[1..] {
        let other = schema_of(edge);
        if !same_columns(&schema, &other) {
            return Err(SpecIssue::new(format!(
                "inputs `{}` and `{}` have different schemas ({} vs {}); a union needs identical columns",
                planned[first.component].name,
                planned[edge.component].name,
                describe(&schema),
                describe(&other)
            )));
        }
    }
    Ok(Some(schema))
}

/// Plans one component against its input schema: output schema, parallelism, what to run.
///
/// # Errors
/// The component's own planning errors, and parallelism it cannot have.
fn plan_component(
    component: Declared,
    edges: Vec<InputRef>,
    input_schema: Option<SchemaRef>,
    ctx: &PlanContext,
) -> Result<PlannedComponent, SpecIssue> {
    let ctx = &PlanContext {
        component: label(&component),
        on_error: component.common.on_error(),
        parallelism: component.common.parallelism.as_ref().map(|p| p.value),
        ..ctx.clone()
    };
    let parallelism_option = component.common.parallelism.as_ref();
    if let Some(p) = parallelism_option.filter(|p| p.value == 0) {
        return Err(SpecIssue::at(&p.referenced, "parallelism must be at least 1"));
    }
    let (schema, parallelism, runnable) = match &component.spec {
        Spec::Source(spec) => {
            let source = spec.plan(ctx)?;
            let (watermarks, schema) = match &component.common.event_time {
                None => (None, source.schema),
                Some(event_time) => {
                    let (strategy, schema) = event_time.value.plan(&source.schema)?;
                    (Some(strategy), schema)
                }
            };
            let runnable =
                Runnable::Source { factory: source.factory, on_error: component.common.on_error(), watermarks };
            (schema, source.parallelism, runnable)
        }
        Spec::Transform(spec) => {
            let input = input_schema.expect("transforms have inputs");
            let transform = spec.plan(&input, ctx)?;
            let parallelism = match (&transform.partitioning, parallelism_option) {
                (Partitioning::Single, Some(p)) if p.value > 1 => {
                    return Err(SpecIssue::at(
                        &p.referenced,
                        "without `group_by` every row meets in one subtask; parallelism must be 1",
                    ));
                }
                (Partitioning::Single, _) => 1,
                (Partitioning::Hash(_), Some(p)) if p.value > usize::from(KEY_GROUPS) => {
                    return Err(SpecIssue::at(
                        &p.referenced,
                        format!(
                            "a keyed step runs at most {KEY_GROUPS} subtasks (its state is kept in {KEY_GROUPS} key groups)"
                        ),
                    ));
                }
                (Partitioning::Hash(_), None) => ctx.default_parallelism.min(usize::from(KEY_GROUPS)),
                (_, option) => option.map_or(ctx.default_parallelism, |p| p.value),
            };
            let runnable = Runnable::Transform {
                factory: transform.factory,
                on_error: component.common.on_error(),
                partitioning: transform.partitioning,
            };
            (transform.schema, parallelism, runnable)
        }
        Spec::Sink(spec) => {
            let input = input_schema.expect("sinks have inputs");
            let factory = spec.plan(&input, ctx)?;
            (input, 1, Runnable::Sink { factory, on_error: component.common.on_error() })
        }
    };
    Ok(PlannedComponent {
        name: component.name,
        role: component.role,
        kind: component.kind,
        inputs: edges,
        parallelism,
        schema,
        runnable,
    })
}

/// Sinks that need each key's rows in order (upserts, [`SinkFactory::ordered_by`]) get them:
/// every stateless step with several subtasks upstream of such a sink (up to the sources or a
/// keyed step) routes its input by a hash of the key when its input has the key columns, and
/// runs as one subtask otherwise. Round-robin would let two subtasks overtake each other, and an
/// upsert sink then ended with stale rows (1 run in 8 with default parallelism).
///
/// [`SinkFactory::ordered_by`]: weir_engine::component::SinkFactory::ordered_by
fn keep_key_order(planned: &mut [PlannedComponent]) {
    for sink in 0..planned.len() {
        let Runnable::Sink { factory, .. } = &planned[sink].runnable else { continue };
        let Some(key) = factory.ordered_by() else { continue };
        let names: Vec<String> = key.iter().map(|&i| planned[sink].schema.field(i).name().clone()).collect();
        let mut upstream: Vec<usize> =
            planned[sink].inputs.iter().filter(|edge| edge.port == Port::Main).map(|edge| edge.component).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(step) = upstream.pop() {
            if !seen.insert(step) {
                continue;
            }
            let inputs: Vec<usize> =
                planned[step].inputs.iter().filter(|edge| edge.port == Port::Main).map(|edge| edge.component).collect();
            let Some(&first) = inputs.first() else { continue };
            let parallelism = planned[step].parallelism;
            let input_schema = planned[first].schema.clone();
            let Runnable::Transform { partitioning, .. } = &mut planned[step].runnable else { continue };
            if !matches!(partitioning, Partitioning::Any) {
                continue; // keyed or single: its own partitioning decides, and it keeps order per key
            }
            if parallelism > 1 {
                let columns: Option<Vec<usize>> = names.iter().map(|name| input_schema.index_of(name).ok()).collect();
                match columns {
                    Some(columns) => *partitioning = Partitioning::Hash(columns),
                    None => planned[step].parallelism = 1,
                }
                tracing::debug!(step = %planned[step].name, sink = %planned[sink].name, "keeps key order for an upsert sink");
            }
            upstream.extend(inputs);
        }
    }
}

fn section_of(role: Role) -> &'static str {
    match role {
        Role::Source => "sources",
        Role::Transform => "transforms",
        Role::Sink => "sinks",
    }
}

fn same_columns(a: &arrow::datatypes::Schema, b: &arrow::datatypes::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

fn describe(schema: &arrow::datatypes::Schema) -> String {
    let columns: Vec<String> = schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
    format!("[{}]", columns.join(", "))
}

/// Kahn's algorithm, stable with respect to declaration order. On a cycle, returns one cycle.
fn topological_order(inputs: &[Vec<InputRef>]) -> Result<Vec<usize>, Vec<usize>> {
    let count = inputs.len();
    let mut pending: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut done = vec![false; count];
    let mut order = Vec::with_capacity(count);
    while order.len() < count {
        let Some(next) = (0..count).find(|&i| !done[i] && pending[i] == 0) else {
            return Err(find_cycle(inputs, &done));
        };
        done[next] = true;
        order.push(next);
        for (i, edges) in inputs.iter().enumerate() {
            pending[i] -= edges.iter().filter(|edge| edge.component == next).count();
        }
    }
    Ok(order)
}

/// Walks upstream from an unplaced component until a component repeats.
fn find_cycle(inputs: &[Vec<InputRef>], done: &[bool]) -> Vec<usize> {
    let start = (0..inputs.len()).find(|&i| !done[i]).expect("a cycle exists");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let upstream =
            inputs[current].iter().map(|edge| edge.component).find(|&u| !done[u]).expect("cycle continues upstream");
        if let Some(at) = path.iter().position(|&p| p == upstream) {
            let mut cycle = path[at..].to_vec();
            cycle.reverse();
            return cycle;
        }
        path.push(upstream);
        current = upstream;
    }
}
