//! The plugin worlds of `wit/plugin.wit`, one module each behind the [`World`] trait: what a
//! component exports to implement the world, how it is linked and instantiated, how it describes
//! its functions, and (in an `impl Instance` block of the world's module) the calls it offers.
//!
//! Adding a world: a module here implementing [`World`], one variant in [`PluginKind`],
//! [`Functions`], `Pre` and `Bindings`, and one line in [`WORLDS`]'s detection order.

mod aggregate;
mod scalar;
mod table;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::bindings::{AggregateSignature, PluginInfo, ScalarSignature, TableSignature};
use crate::convert::{to_arrow_field, to_arrow_type};
use crate::registry::FunctionShape;
use crate::sandbox::StoreState;

pub(crate) use aggregate::AggregateWorld;
pub(crate) use scalar::{ScalarBuffersWorld, ScalarWorld};
pub(crate) use table::TableWorld;

/// One plugin world.
pub(crate) trait World {
    /// The world's name in `wit/plugin.wit` (`scalar-udf`).
    const NAME: &'static str;
    /// The interface a component exports to implement the world.
    const EXPORT: &'static str;
    /// The linked, pre-instantiated component.
    type Pre: Clone + Send + Sync;
    /// A live instance's exports.
    type Bindings: Send;

    /// Links the world's imports (weir's host interface) and pre-instantiates the component.
    fn pre(linker: &mut Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre>;

    /// Instantiates a pre-instantiated component.
    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self::Bindings>;

    /// Calls the plugin's `describe`.
    fn describe(bindings: &Self::Bindings, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)>;
}

/// How a plugin's functions are called: which kind of step or expression can use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// One value per row (`scalar-udf`, `scalar-udf-buffers`).
    Scalar,
    /// Zero or more rows per row (`table-udf`).
    Table,
    /// Accumulator states folded per group (`aggregate-udf`).
    Aggregate,
}

impl PluginKind {
    /// The kind with its article, for messages ("a scalar-udf plugin").
    pub fn described(self) -> &'static str {
        match self {
            Self::Scalar => "a scalar-udf",
            Self::Table => "a table-udf",
            Self::Aggregate => "an aggregate-udf",
        }
    }
}

/// The functions a plugin describes, by world.
#[derive(Debug, Clone)]
pub enum Functions {
    /// Scalar functions.
    Scalar(Vec<ScalarSignature>),
    /// Table functions.
    Table(Vec<TableSignature>),
    /// Aggregate functions.
    Aggregate(Vec<AggregateSignature>),
}

impl Functions {
    /// How the functions are called.
    pub fn kind(&self) -> PluginKind {
        match self {
            Self::Scalar(_) => PluginKind::Scalar,
            Self::Table(_) => PluginKind::Table,
            Self::Aggregate(_) => PluginKind::Aggregate,
        }
    }

    /// Function names in declaration order (a function's index is its position).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Scalar(functions) => functions.iter().map(|f| f.name.as_str()).collect(),
            Self::Table(functions) => functions.iter().map(|f| f.name.as_str()).collect(),
            Self::Aggregate(functions) => functions.iter().map(|f| f.name.as_str()).collect(),
        }
    }

    /// How many functions there are.
    pub fn len(&self) -> usize {
        match self {
            Self::Scalar(functions) => functions.len(),
            Self::Table(functions) => functions.len(),
            Self::Aggregate(functions) => functions.len(),
        }
    }

    /// Whether the plugin declares no function.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scalar functions (none for other worlds).
    pub fn scalar(&self) -> &[ScalarSignature] {
        match self {
            Self::Scalar(functions) => functions,
            _ => &[],
        }
    }

    /// The table functions (none for other worlds).
    pub fn table(&self) -> &[TableSignature] {
        match self {
            Self::Table(functions) => functions,
            _ => &[],
        }
    }

    /// The aggregate functions (none for other worlds).
    pub fn aggregate(&self) -> &[AggregateSignature] {
        match self {
            Self::Aggregate(functions) => functions,
            _ => &[],
        }
    }

    /// Function `name`: its index and shape in Arrow terms, if the plugin has it.
    pub fn shape(&self, name: &str) -> Option<(u32, FunctionShape)> {
        let types = |args: &[crate::bindings::DataType]| args.iter().map(to_arrow_type).collect::<Vec<_>>();
        let index = self.names().iter().position(|f| *f == name)?;
        let shape = match self {
            Self::Scalar(functions) => {
                let f = &functions[index];
                FunctionShape::Scalar { args: types(&f.args), returns: to_arrow_type(&f.returns) }
            }
            Self::Table(functions) => {
                let f = &functions[index];
                FunctionShape::Table { args: types(&f.args), output: f.output.iter().map(to_arrow_field).collect() }
            }
            Self::Aggregate(functions) => {
                let f = &functions[index];
                FunctionShape::Aggregate {
                    args: types(&f.args),
                    returns: to_arrow_type(&f.returns),
                    state_version: f.state_version,
                }
            }
        };
        Some((index as u32, shape))
    }
}

/// Links a component for one world.
pub(crate) type Link = fn(&mut Linker<StoreState>, &Component) -> wasmtime::Result<Pre>;

/// Which world a component implements, by what it exports, in this order (a component that
/// exports both scalar interfaces is called through column buffers).
pub(crate) const WORLDS: &[(&str, Link)] = &[
    (ScalarBuffersWorld::EXPORT, |linker, component| {
        Ok(Pre::ScalarBuffers(ScalarBuffersWorld::pre(linker, component)?))
    }),
    (ScalarWorld::EXPORT, |linker, component| Ok(Pre::Scalar(ScalarWorld::pre(linker, component)?))),
    (TableWorld::EXPORT, |linker, component| Ok(Pre::Table(TableWorld::pre(linker, component)?))),
    (AggregateWorld::EXPORT, |linker, component| Ok(Pre::Aggregate(AggregateWorld::pre(linker, component)?))),
];

/// Every world's export, for the error that lists what a plugin could implement.
pub(crate) fn exports() -> String {
    WORLDS.iter().map(|(export, _)| *export).collect::<Vec<_>>().join(", ")
}

/// A plugin linked and pre-instantiated for its world.
#[derive(Clone)]
pub(crate) enum Pre {
    Scalar(<ScalarWorld as World>::Pre),
    ScalarBuffers(<ScalarBuffersWorld as World>::Pre),
    Table(<TableWorld as World>::Pre),
    Aggregate(<AggregateWorld as World>::Pre),
}

/// A live instance's exports, for its world.
pub(crate) enum Bindings {
    Scalar(<ScalarWorld as World>::Bindings),
    ScalarBuffers(<ScalarBuffersWorld as World>::Bindings),
    Table(<TableWorld as World>::Bindings),
    Aggregate(<AggregateWorld as World>::Bindings),
}

impl Pre {
    /// The world's name in `wit/plugin.wit`.
    pub(crate) fn world(&self) -> &'static str {
        match self {
            Self::Scalar(_) => ScalarWorld::NAME,
            Self::ScalarBuffers(_) => ScalarBuffersWorld::NAME,
            Self::Table(_) => TableWorld::NAME,
            Self::Aggregate(_) => AggregateWorld::NAME,
        }
    }

    /// A new instance.
    pub(crate) fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Self::Scalar(pre) => Bindings::Scalar(ScalarWorld::instantiate(pre, store)?),
            Self::ScalarBuffers(pre) => Bindings::ScalarBuffers(ScalarBuffersWorld::instantiate(pre, store)?),
            Self::Table(pre) => Bindings::Table(TableWorld::instantiate(pre, store)?),
            Self::Aggregate(pre) => Bindings::Aggregate(AggregateWorld::instantiate(pre, store)?),
        })
    }
}

impl Bindings {
    /// The plugin's self-description.
    pub(crate) fn describe(&self, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)> {
        match self {
            Self::Scalar(bindings) => ScalarWorld::describe(bindings, store),
            Self::ScalarBuffers(bindings) => ScalarBuffersWorld::describe(bindings, store),
            Self::Table(bindings) => TableWorld::describe(bindings, store),
            Self::Aggregate(bindings) => AggregateWorld::describe(bindings, store),
        }
    }
}
