//! Attack parameters: the `key=value` text, and the one declaration per attack from which its
//! parser, its printed `params()` and its strengthened variant all derive.

use gauntlet_models::Loss;

use crate::attack::Attack;
use crate::iterate::StepSize;
use crate::{AttackError, Result};

/// `key=value` parameters of an attack, consumed by its constructor; leftovers are an error.
#[derive(Debug, Clone, Default)]
pub struct Params {
    attack: String,
    entries: Vec<(String, String)>,
}

impl Params {
    /// Parses `k=v,k=v` (an empty string gives no parameters).
    pub fn parse(attack: &str, text: &str) -> Result<Self> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(AttackError::Param {
                    attack: attack.into(),
                    message: format!("`{part}` is not key=value"),
                });
            };
            let k = k.trim().to_ascii_lowercase();
            if entries.iter().any(|(e, _)| *e == k) {
                return Err(AttackError::Param { attack: attack.into(), message: format!("`{k}` is given twice") });
            }
            entries.push((k, v.trim().to_string()));
        }
        Ok(Params { attack: attack.into(), entries })
    }

    fn take_raw(&mut self, key: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    pub(crate) fn err(&self, message: String) -> AttackError {
        AttackError::Param { attack: self.attack.clone(), message }
    }

    /// A number; fractions such as `2/255` are accepted.
    pub fn take_f64(&mut self, key: &str) -> Result<Option<f64>> {
        match self.take_raw(key) {
            None => Ok(None),
            Some(v) => parse_number(&v)
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}={v}` is not a number"))),
        }
    }

    pub fn take_usize(&mut self, key: &str) -> Result<Option<usize>> {
        match self.take_raw(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.err(format!("`{key}={v}` is not a whole number"))),
        }
    }

    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take_raw(key).as_deref() {
            None => Ok(None),
            Some("true" | "yes" | "1" | "on") => Ok(Some(true)),
            Some("false" | "no" | "0" | "off") => Ok(Some(false)),
            Some(v) => Err(self.err(format!("`{key}={v}` is not true or false"))),
        }
    }

    pub fn take_loss(&mut self) -> Result<Option<Loss>> {
        match self.take_raw("loss").as_deref() {
            None => Ok(None),
            Some("ce" | "cross-entropy" | "xent") => Ok(Some(Loss::CrossEntropy)),
            Some("margin" | "cw") => Ok(Some(Loss::Margin)),
            Some("dlr") => Ok(Some(Loss::Dlr)),
            Some(v) => Err(self.err(format!("`loss={v}` is unknown; use ce, margin or dlr"))),
        }
    }

    /// Fails on any key the constructor did not take, listing the keys it knows.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(self.err(format!("unknown parameter `{k}`; known: {}", known.join(", ")))),
        }
    }
}

/// Parses `0.3`, `8/255` or `1e-2`.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (b != 0.0).then(|| a / b)
        }
        None => s.parse().ok(),
    }
}

/// An attack whose parameters are declared once, in [`Declared::declare`]: [`parse`], [`print`]
/// and [`strengthen`] all walk that declaration, so they cannot drift apart.
pub(crate) trait Declared: Attack + Clone + 'static {
    /// Walks every parameter through `f`, in the order they are printed.
    fn declare(&mut self, f: &mut Fields) -> Result<()>;

    /// Rules the parsed values must follow: (whether it holds, the message if not).
    fn rules(&self) -> Vec<(bool, &'static str)> {
        Vec::new()
    }
}

/// `params()` and `strengthened()` of an [`Attack`] implementation, from its declaration.
macro_rules! declared_params {
    () => {
        fn params(&self) -> String {
            $crate::params::print(self)
        }

        fn strengthened(&self) -> Option<Box<dyn Attack>> {
            $crate::params::strengthen(self)
        }
    };
}

/// What a walk over a declaration does.
enum Walk {
    /// Reads each parameter given (the field keeps its default otherwise), noting the keys.
    Parse { params: Params, known: Vec<&'static str> },
    /// Writes `key=value` for each.
    Print(Vec<String>),
    /// Doubles the iterations and adds a restart; notes whether there was anything to change.
    Strengthen { changed: bool },
}

/// The visitor a declaration walks its fields through.
pub(crate) struct Fields(Walk);

impl Fields {
    fn field<T>(
        &mut self,
        key: &'static str,
        v: &mut T,
        take: impl FnOnce(&mut Params) -> Result<Option<T>>,
        show: impl FnOnce(&T) -> String,
    ) -> Result<()> {
        match &mut self.0 {
            Walk::Parse { params, known } => {
                known.push(key);
                if let Some(x) = take(params)? {
                    *v = x;
                }
            }
            Walk::Print(out) => out.push(format!("{key}={}", show(v))),
            Walk::Strengthen { .. } => {}
        }
        Ok(())
    }

    pub(crate) fn count(&mut self, key: &'static str, v: &mut usize) -> Result<()> {
        self.field(key, v, |p| p.take_usize(key), usize::to_string)
    }

    pub(crate) fn number(&mut self, key: &'static str, v: &mut f64) -> Result<()> {
        self.field(key, v, |p| p.take_f64(key), f64::to_string)
    }

    pub(crate) fn flag(&mut self, key: &'static str, v: &mut bool) -> Result<()> {
        self.field(key, v, |p| p.take_bool(key), bool::to_string)
    }

    pub(crate) fn loss(&mut self, v: &mut Loss) -> Result<()> {
        self.field("loss", v, Params::take_loss, |l| l.name().to_string())
    }

    /// A number printed as `auto` while it is unset.
    pub(crate) fn auto(&mut self, key: &'static str, v: &mut Option<f64>) -> Result<()> {
        self.field(key, v, |p| Ok(p.take_f64(key)?.map(Some)), |v| v.map_or("auto".into(), |x| x.to_string()))
    }

    /// The iteration count (steps, queries), doubled when strengthened.
    pub(crate) fn iterations(&mut self, key: &'static str, v: &mut usize) -> Result<()> {
        if let Walk::Strengthen { changed } = &mut self.0 {
            (*v, *changed) = (2 * *v, true);
        }
        self.count(key, v)
    }

    /// `restarts`, one more when strengthened.
    pub(crate) fn restarts(&mut self, v: &mut usize) -> Result<()> {
        if let Walk::Strengthen { changed } = &mut self.0 {
            (*v, *changed) = (*v + 1, true);
        }
        self.count("restarts", v)
    }

    /// The step size, as `step` (absolute) or `rel_step` (a fraction of ε); `Relative(default)`
    /// when neither is given. A relative step stays relative when strengthened.
    pub(crate) fn step(&mut self, v: &mut StepSize, default: f64) -> Result<()> {
        match &mut self.0 {
            Walk::Parse { params, known } => {
                known.extend(["step", "rel_step"]);
                *v = match (params.take_f64("step")?, params.take_f64("rel_step")?) {
                    (Some(_), Some(_)) => {
                        return Err(
                            params.err("give either step (absolute) or rel_step (fraction of ε), not both".into())
                        )
                    }
                    (Some(a), None) => StepSize::Absolute(a),
                    (None, r) => StepSize::Relative(r.unwrap_or(default)),
                };
                if matches!(*v, StepSize::Absolute(x) | StepSize::Relative(x) if x <= 0.0) {
                    return Err(params.err("the step size must be positive".into()));
                }
            }
            Walk::Print(out) => out.push(match *v {
                StepSize::Absolute(a) => format!("step={a}"),
                StepSize::Relative(r) => format!("rel_step={r}"),
            }),
            Walk::Strengthen { .. } => {}
        }
        Ok(())
    }
}

/// `attack` (holding the defaults) with the parameters `p` read in. Unknown keys and values its
/// [`Declared::rules`] reject are errors.
pub(crate) fn parse<A: Declared>(mut attack: A, p: Params) -> Result<A> {
    let mut f = Fields(Walk::Parse { params: p, known: Vec::new() });
    attack.declare(&mut f)?;
    if let Walk::Parse { params, known } = f.0 {
        params.finish(&known)?;
    }
    match attack.rules().into_iter().find(|(holds, _)| !holds) {
        Some((_, m)) => Err(AttackError::Param { attack: attack.name().into(), message: m.into() }),
        None => Ok(attack),
    }
}

/// The parameters as `key=value` comma-separated, in declaration order.
pub(crate) fn print<A: Declared>(attack: &A) -> String {
    let mut f = Fields(Walk::Print(Vec::new()));
    attack.clone().declare(&mut f).ok();
    match f.0 {
        Walk::Print(out) => out.join(","),
        _ => unreachable!(),
    }
}

/// The attack with twice the iterations and one more restart; `None` when it declares neither.
pub(crate) fn strengthen<A: Declared>(attack: &A) -> Option<Box<dyn Attack>> {
    let mut stronger = attack.clone();
    let mut f = Fields(Walk::Strengthen { changed: false });
    stronger.declare(&mut f).ok()?;
    matches!(f.0, Walk::Strengthen { changed: true }).then(|| Box::new(stronger) as Box<dyn Attack>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_reject_unknown_keys() {
        let mut p = Params::parse("pgd", "steps=10, step=2/255,random_start=false").unwrap();
        assert_eq!(p.take_usize("steps").unwrap(), Some(10));
        assert!((p.take_f64("step").unwrap().unwrap() - 2.0 / 255.0).abs() < 1e-12);
        assert_eq!(p.take_bool("random_start").unwrap(), Some(false));
        p.finish(&[]).unwrap();
        let p = Params::parse("pgd", "stepz=3").unwrap();
        let e = p.finish(&["steps"]).unwrap_err().to_string();
        assert!(e.contains("unknown parameter `stepz`") && e.contains("steps"), "{e}");
        assert!(Params::parse("pgd", "steps").is_err());
        assert!(Params::parse("pgd", "steps=1,steps=2").is_err());
        let mut p = Params::parse("pgd", "steps=x").unwrap();
        assert!(p.take_usize("steps").is_err());
    }

    #[test]
    fn numbers_accept_fractions() {
        assert_eq!(parse_number("8/255"), Some(8.0 / 255.0));
        assert_eq!(parse_number("0.3"), Some(0.3));
        assert_eq!(parse_number("1/0"), None);
        assert_eq!(parse_number("abc"), None);
    }

    #[test]
    fn declarations_print_round_trip_and_strengthen() {
        use crate::AttackKind::*;
        let registry = crate::Registry::default();
        let all = [
            ("fgsm", SingleStep, "loss=ce", None),
            (
                "pgd",
                Iterative,
                "steps=40,rel_step=0.0625,restarts=1,random_start=true,loss=ce,early_stop=true",
                Some("steps=80,rel_step=0.0625,restarts=2,random_start=true,loss=ce,early_stop=true"),
            ),
            (
                "pgd:step=0.01,steps=10",
                Iterative,
                "steps=10,step=0.01,restarts=1,random_start=true,loss=ce,early_stop=true",
                Some("steps=20,step=0.01,restarts=2,random_start=true,loss=ce,early_stop=true"),
            ),
            (
                "mi-fgsm",
                Iterative,
                "steps=10,rel_step=0.1,decay=1,loss=ce",
                Some("steps=20,rel_step=0.1,decay=1,loss=ce"),
            ),
            ("apgd", Iterative, "steps=100,restarts=1,rho=0.75", Some("steps=200,restarts=2,rho=0.75")),
            (
                "apgd-t",
                Iterative,
                "steps=100,restarts=1,rho=0.75,targets=9",
                Some("steps=200,restarts=2,rho=0.75,targets=9"),
            ),
            (
                "fmn",
                MinimalNorm,
                "steps=100,alpha_init=auto,alpha_final=auto,gamma_init=0.05,gamma_final=0.001,targets=1",
                Some("steps=200,alpha_init=auto,alpha_final=auto,gamma_init=0.05,gamma_final=0.001,targets=1"),
            ),
            (
                "square",
                GradientFree,
                "queries=5000,p_init=0.8,restarts=1,loss=margin",
                Some("queries=10000,p_init=0.8,restarts=2,loss=margin"),
            ),
        ];
        for (spec, kind, params, stronger) in all {
            let a = registry.create(spec).unwrap();
            assert_eq!((a.kind(), a.params().as_str()), (kind, params), "{spec}");
            // `auto` is printed for an unset value but not accepted as one.
            let text = params.replace("alpha_init=auto,alpha_final=auto,", "");
            let again = registry.create(&format!("{}:{text}", a.name())).unwrap();
            assert_eq!(again.params(), params, "{spec} does not round-trip");
            let s = a.strengthened();
            assert_eq!(s.as_ref().map(|s| s.params()).as_deref(), stronger, "{spec}");
            assert!(s.is_none_or(|s| s.name() == a.name() && s.kind() == kind));
        }
    }
}
