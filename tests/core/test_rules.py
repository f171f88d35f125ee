"""The rule registry (deployer/core/rules.py) and docs/rules.md: every rule id the code can report
is registered at the severities the code reports it with, nothing registered is reported nowhere,
and the page is what the generator writes."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from deployer.checks.pipeline import check_paths
from deployer.core.rules import FAMILIES, RULES
from deployer.spec.schema import schema

from ..conftest import FIXTURES, MINIMAL, REPO

PACKAGE = REPO / "deployer"
RULE_ID = re.compile(r"^[a-z][a-z-]*\.[a-z][A-Za-z-]*$")

# Keywords spec/schema.py's _explain reports under a rule name of its own (`unknown-key`,
# `missing-key`, `one-of` or `type`, `depends`), passed to it as a literal; every other keyword
# that can fail is reported as `schema.<keyword>`.
RENAMED_BY_EXPLAIN = ("additionalProperties", "required", "oneOf", "anyOf", "dependentRequired")
# Keywords that never fail on their own: annotations, and applicators whose failures are those of
# the keywords inside them. (`if` is only a condition: what fails under it is never reported.)
NEVER_FAIL = {
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "title",
    "description",
    "default",
    "x-hint",
    "x-message",
    "examples",
    "properties",
    "items",
    "propertyNames",
    "if",
    "then",
}


def schema_keywords() -> set[str]:
    """The JSON Schema keywords deployment.schema.json uses where a document is validated."""
    found: set[str] = set()

    def walk(node: dict) -> None:
        found.update(node)
        for key, value in node.items():
            if key in ("properties", "$defs"):
                subschemas = list(value.values())
            elif key in ("oneOf", "anyOf", "allOf"):
                subschemas = value
            elif key in ("items", "additionalProperties", "propertyNames", "then", "not"):
                subschemas = [value]
            else:  # values, names, `if` (a condition, never reported)
                subschemas = []
            for sub in subschemas:
                if isinstance(sub, dict):
                    walk(sub)

    walk(schema())
    return found


def _schema_kinds() -> set[str]:
    return schema_keywords() - NEVER_FAIL - set(RENAMED_BY_EXPLAIN)


# Rule ids built at run time from a variable that is neither a literal nor a parameter: where the
# variable's values come from.
RESOLVED = {("spec/schema.py", "kind"): _schema_kinds}
# `rule=rule` passed on from (rule, problem, hint) tuples that another module returns: every id
# written in that module.
PASSED_ON = {("checks/sources.py", "rule"): "sources/folders.py"}


class Scan:
    """Rule ids the package's source can report, each with the severities it is reported at,
    read from the code: `rule=` arguments (literals, and f-strings whose variable parts are
    literals passed to the function that builds them), and tuples of ids returned for others."""

    def __init__(self) -> None:
        self.emitted: dict[str, set[str]] = {}
        self.compared: set[str] = set()
        self.unexplained: list[str] = []
        for path in sorted(PACKAGE.rglob("*.py")):
            self._scan(path)

    def _scan(self, path: Path) -> None:
        module = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        enclosing = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and _is_rule_attribute(node.left):
                self.compared |= {
                    c.value
                    for c in node.comparators
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg != "rule":
                    continue
                where = f"{module}:{node.lineno}"
                ids = self._ids(keyword.value, enclosing.get(node), tree, enclosing, module, where)
                for rule_id in ids:
                    self.emitted.setdefault(rule_id, set()).add(_severity(node, where))

    def _ids(self, value, function, tree, enclosing, module: str, where: str) -> set[str]:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return {value.value} if value.value else set()
        if isinstance(value, ast.JoinedStr):
            parts = value.values
            if (
                len(parts) == 2
                and isinstance(parts[0], ast.Constant)
                and isinstance(parts[1], ast.FormattedValue)
            ):
                prefix = parts[0].value
                tails = self._values(parts[1].value, function, tree, enclosing, module, where)
                return {prefix + tail for tail in tails if tail}
        if isinstance(value, ast.Name):
            if (module, value.id) in PASSED_ON:
                source = PACKAGE / PASSED_ON[(module, value.id)]
                return {
                    n.value
                    for n in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                    if isinstance(n, ast.Constant)
                    and isinstance(n.value, str)
                    and RULE_ID.match(n.value)
                }
            if function is not None and value.id in _parameters(function):
                return set()  # passed through: its callers' literals are scanned where they are
        self.unexplained.append(f"{where}: rule={ast.unparse(value)}")
        return set()

    def _values(self, expr, function, tree, enclosing, module: str, where: str) -> set[str]:
        """The strings `expr` can be: a literal, `a or b`, a parameter (the literals its callers
        pass), or a variable whose values RESOLVED knows."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or):
            return set().union(
                *(self._values(v, function, tree, enclosing, module, where) for v in expr.values)
            )
        if isinstance(expr, ast.Name) and (module, expr.id) in RESOLVED:
            return RESOLVED[(module, expr.id)]()
        if isinstance(expr, ast.Name) and function is not None:
            parameters = _parameters(function)
            if expr.id in parameters:
                index, found = parameters.index(expr.id), set()
                for call in ast.walk(tree):
                    if not (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Name)
                        and call.func.id == function.name
                    ):
                        continue
                    given = call.args[index] if len(call.args) > index else None
                    given = given or next(
                        (k.value for k in call.keywords if k.arg == expr.id), None
                    )
                    if given is not None:
                        found |= self._values(
                            given, enclosing.get(call), tree, enclosing, module, where
                        )
                return found
        self.unexplained.append(f"{where}: {ast.unparse(expr)} in a rule id")
        return set()


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, ast.FunctionDef]:
    """Each node → the innermost function definition holding it."""
    found: dict[ast.AST, ast.FunctionDef] = {}

    def visit(node: ast.AST, function: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if function is not None:
                found[child] = function
            inner = child if isinstance(child, ast.FunctionDef) else function
            visit(child, inner)

    visit(tree, None)
    return found


def _parameters(function: ast.FunctionDef) -> list[str]:
    return [a.arg for a in function.args.args]


def _is_rule_attribute(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "rule"


def _severity(call: ast.Call, where: str) -> str:
    for keyword in call.keywords:
        if keyword.arg == "severity":
            value = keyword.value
            assert (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == "Severity"
            ), f"{where}: severity={ast.unparse(value)} cannot be read from the code"
            return value.attr.lower()
    return "error"  # Diagnostic's and at()'s default


@pytest.fixture(scope="module")
def scan() -> Scan:
    return Scan()


def registered_severities() -> dict[str, set[str]]:
    return {rule_id: {s.value for s in rule.severities} for rule_id, rule in RULES.items()}


# ---------------------------------------------------------------------------------------------
# The registry itself


def test_every_rule_id_is_registered_once_in_its_own_family():
    ids = [rule.id for family in FAMILIES for rule in family.rules]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for family in FAMILIES:
        for rule in family.rules:
            assert rule.id.split(".", 1)[0] == family.name, rule.id
            assert RULE_ID.match(rule.id), rule.id


def test_every_rule_says_what_it_catches_and_how_to_fix_it_in_sentences():
    for family in FAMILIES:
        assert family.about.endswith("."), family.name
        for rule in family.rules:
            assert rule.severities, rule.id
            for text in (rule.catches, rule.fix):
                assert text[:1].isupper() or text[:1] in "`'\"", f"{rule.id}: {text}"
                assert text.endswith("."), f"{rule.id}: {text}"
                assert "\n" not in text, rule.id


# ---------------------------------------------------------------------------------------------
# What the code reports against what is registered


def test_every_rule_id_in_the_code_can_be_enumerated(scan):
    assert not scan.unexplained, (
        "rule ids this test cannot enumerate (teach Scan, RESOLVED or PASSED_ON):\n"
        + "\n".join(scan.unexplained)
    )


def test_the_schema_keywords_explain_renames_are_ones_it_handles():
    source = (PACKAGE / "spec" / "schema.py").read_text(encoding="utf-8")
    for keyword in RENAMED_BY_EXPLAIN:
        assert f'"{keyword}"' in source, keyword


def test_every_rule_id_the_code_can_report_is_registered(scan):
    unregistered = sorted(set(scan.emitted) - set(RULES))
    assert not unregistered, f"add these to deployer/core/rules.py: {unregistered}"


def test_every_registered_rule_is_reported_somewhere_in_the_code(scan):
    stale = sorted(set(RULES) - set(scan.emitted))
    assert not stale, f"registered, but no code reports them: {stale}"


def test_registered_severities_are_the_ones_the_code_reports(scan):
    registered = registered_severities()
    wrong = {
        rule_id: (sorted(registered[rule_id]), sorted(severities))
        for rule_id, severities in scan.emitted.items()
        if rule_id in registered and registered[rule_id] != severities
    }
    assert not wrong, f"(registered, in the code): {wrong}"


def test_rule_ids_the_code_compares_findings_with_are_registered(scan):
    assert scan.compared, "the scan should see d.rule == '...' in deploy/state.py"
    assert scan.compared <= set(RULES), sorted(scan.compared - set(RULES))


def test_every_finding_on_the_bad_corpus_and_the_shipped_deployments_is_registered():
    checked = check_paths([FIXTURES / "bad", REPO / "deployments"])
    findings = checked.diagnostics + checked.notes
    assert len({d.rule for d in findings}) > 20  # the corpus covers many rules
    registered = registered_severities()
    unregistered = sorted({d.rule for d in findings} - set(registered))
    assert not unregistered, unregistered
    for d in findings:
        assert d.severity.value in registered[d.rule], f"{d.rule} reported as {d.severity.value}"


def test_validate_json_carries_registered_rule_ids(cli):
    import json

    code, out, _ = cli("validate", "--format", "json", FIXTURES / "bad")
    assert code == 1
    report = json.loads(out)
    rules = {item["rule"] for item in report["diagnostics"] + report["notes"]}
    assert rules and rules <= set(RULES), sorted(rules - set(RULES))


# One document per schema rule, each breaking the keyword the rule is named for.
def _limit(*path: str | int) -> int:
    node: object = schema()
    for part in path:
        node = node[part]  # type: ignore[index]
    return node  # type: ignore[return-value]


SCHEMA_CASES = {
    "schema.unknown-key": lambda d: d.update(colour="red"),
    "schema.missing-key": lambda d: d.pop("gpu"),
    "schema.one-of": lambda d: d.update(base_model={"repo": "a/b", "path": "m"}),
    "schema.type": lambda d: d.update(adapters=3),
    "schema.pattern": lambda d: d.update(name="Not_A_Name"),
    "schema.const": lambda d: d.update(auth="public"),
    "schema.minimum": lambda d: d.update(scaling={"timeout": 1}),
    "schema.maximum": lambda d: d.update(
        gpu={
            "type": "A10G",
            "count": _limit("properties", "gpu", "oneOf", 1, "properties", "count", "maximum") + 1,
        }
    ),
    "schema.minLength": lambda d: d.update(smoke={"prompt": ""}),
    "schema.maxLength": lambda d: d.update(
        smoke={
            "prompt": "x" * (_limit("properties", "smoke", "properties", "prompt", "maxLength") + 1)
        }
    ),
    "schema.maxItems": lambda d: d.update(
        secrets=[f"s{i}" for i in range(_limit("properties", "secrets", "maxItems") + 1)]
    ),
    "schema.maxProperties": lambda d: d.update(
        image={
            "env": {
                f"V{i}": "1"
                for i in range(
                    _limit("properties", "image", "properties", "env", "maxProperties") + 1
                )
            }
        }
    ),
    "schema.minProperties": lambda d: d.update(auth={}),
    "schema.uniqueItems": lambda d: d.update(secrets=["a", "a"]),
    "schema.depends": lambda d: d.update(scaling={"target_concurrent_inputs": 2}),
    "schema.enum": lambda d: d.update(adapter_loading="sometimes"),
}


def test_every_registered_schema_rule_has_a_document_that_breaks_it():
    assert set(SCHEMA_CASES) == {i for i in RULES if i.startswith("schema.")}


@pytest.mark.parametrize("rule_id", sorted(SCHEMA_CASES))
def test_a_document_breaking_a_schema_keyword_reports_its_registered_rule(rule_id, tmp_path):
    data = yaml.safe_load(MINIMAL)
    SCHEMA_CASES[rule_id](data)
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    reported = {d.rule for d in check_paths([path], schema_only=True).diagnostics}
    assert rule_id in reported, reported
    assert reported <= set(RULES), sorted(reported - set(RULES))


# ---------------------------------------------------------------------------------------------
# docs/rules.md


def _generator():
    path = REPO / "scripts" / "generate_rule_docs.py"
    spec = importlib.util.spec_from_file_location("generate_rule_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_rules_md_is_what_the_generator_writes():
    page = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert page == _generator().render(), "run scripts/generate_rule_docs.py"


def test_the_page_has_a_section_for_every_family_and_an_entry_for_every_rule():
    page = _generator().render()
    for family in FAMILIES:
        assert f"\n## {family.name}: {family.title}\n" in page
    for rule_id, rule in RULES.items():
        entry = page.split(f"\n### `{rule_id}`\n", 1)[1].split("\n### ", 1)[0]
        assert " or ".join(s.value for s in rule.severities) in entry
        assert "**Fix:**" in entry


def test_generator_check_fails_on_a_stale_page_and_passes_on_a_fresh_one(tmp_path):
    generator, out = _generator(), tmp_path / "rules.md"
    out.write_text("# Rules\n", encoding="utf-8")
    assert generator.main(["--check", "--out", str(out)]) == 1
    assert generator.main(["--out", str(out)]) == 0
    assert generator.main(["--check", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == generator.render()
