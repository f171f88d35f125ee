"""Desired state (deploy hashes) against deployed state (tags read back from Modal, or a git
ref's desired state) → one action per deployment, with a readable summary of what changes.

Pure: the caller reads Modal or git and passes plain values in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from deployer.core.diagnostics import printable
from deployer.core.limits import NOTE_CHARS, SHOWN_CHANGES, SHOWN_CHARS
from deployer.deploy.desired import PROJECT_ENV, Desired, Project, Tag, parse_tag
from deployer.deploy.hot_add import HotAddState
from deployer.deploy.platform import Version
from deployer.render.context import dynamic_adapters_volume
from deployer.sources.lock import Move
from deployer.spec.model import Deployment
from deployer.vllm.concurrency import concurrency

CREATE, UPDATE, UNCHANGED, ORPHAN, CONFLICT = "create", "update", "unchanged", "orphan", "conflict"
HOT_ADD = "hot-add"  # adapters staged into a running dynamic deployment: no new version
SYMBOL = {CREATE: "+", UPDATE: "~", HOT_ADD: "^", UNCHANGED: "=", ORPHAN: "-", CONFLICT: "!"}
HOT_ADD_SHOWN = "hot-add, no restart"


@dataclass(frozen=True)
class Change:
    what: str  # e.g. "gpu", "adapter sql", "vllm flag --max-model-len"
    before: str | None  # None: added
    after: str | None  # None: removed

    def __str__(self) -> str:
        if self.before is None:
            return f"{self.what} added: {self.after}"
        if self.after is None:
            return f"{self.what} removed (was {self.before})"
        return f"{self.what}: {self.before} → {self.after}"


@dataclass(frozen=True)
class Action:
    name: str
    kind: str
    tag: str | None = None  # the tag apply deploys with (create, update)
    deployed: Version | None = None  # what serves now (update, unchanged, orphan)
    changes: tuple[Change, ...] = ()
    effects: tuple[str, ...] = ()  # what the change costs at deploy time
    notes: tuple[str, ...] = ()
    new_weights: tuple[str, ...] = ()  # weights the new version needs that the old did not have
    hot_added: tuple[str, ...] = ()  # hot-add: the adapters to stage (new, or with a new source)
    serving: HotAddState | None = None  # the hot-add that serves now, when one does

    @property
    def changes_something(self) -> bool:
        return self.kind in (CREATE, UPDATE, HOT_ADD, ORPHAN)

    @property
    def blocked(self) -> bool:
        return self.kind == CONFLICT


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    project: Project
    against: str  # what "deployed" was read from
    fallback: str | None = None  # why it is not Modal itself, when it is not
    upstream: tuple[Move, ...] = ()  # locked branches and tags that have moved on the Hub
    notes: tuple[str, ...] = ()  # about the plan as a whole (upstream could not be checked)

    @property
    def has_changes(self) -> bool:
        return any(a.changes_something for a in self.actions)

    def count(self, kind: str) -> int:
        return sum(a.kind == kind for a in self.actions)


REPLACED = (
    "redeployed on request (--replace) with the same configuration: new containers "
    "read Secrets again and, with gpu_snapshot, take a new snapshot"
)


def _hashed_as(desired: Desired, tag: Tag | None) -> bool:
    """Whether `desired` is what a version with `tag` was deployed from (its hash, by prefix)."""
    return tag is not None and desired.deploy_hash.startswith(tag.hash_prefix)


def to_update(
    desired: dict[str, Desired], deployed: dict[str, Version], names: Sequence[str] = ()
) -> list[str]:
    """Deployed apps whose desired state differs from what serves: those a plan explains."""
    return [
        name
        for name, want in desired.items()
        if name in deployed
        and (not names or name in names)
        and not _hashed_as(want, parse_tag(deployed[name].tag))
    ]


def make_plan(
    desired: dict[str, Desired],
    deployed: dict[str, Version],
    previous: dict[str, Desired],
    project: Project,
    against: str,
    names: Sequence[str] = (),
    fallback: str | None = None,
    replace: Sequence[str] = (),
    unread: dict[str, str] | None = None,
    states: Mapping[str, HotAddState] | None = None,
    no_hot_add: str | None = None,
) -> Plan:
    """`deployed`: the version serving now per app name (all apps the source knows about);
    `previous`: what the deployed versions were rendered from, where that is known, and
    `unread`: why it is not, where it could have been;
    `replace`: deployments to redeploy even if unchanged (after rotating a Secret, say);
    `states`: the hot-add state file of each dynamic deployment's adapters volume, where read;
    `no_hot_add`: why no change can be a hot-add (applied from a checkout with uncommitted
    changes, say), if none can."""
    unread = unread or {}
    states = states or {}
    wanted = set(names) or None
    actions = []
    for name in sorted(set(desired) | set(deployed)):
        if wanted is not None and name not in wanted:
            continue
        want, have = desired.get(name), deployed.get(name)
        tag = parse_tag(have.tag) if have else None
        if want is None:
            if tag and tag.project_id == project.id:
                actions.append(
                    Action(
                        name,
                        ORPHAN,
                        deployed=have,
                        notes=("no deployment file any more; `apply --prune` stops it",),
                    )
                )
            continue
        if have is None:
            actions.append(
                Action(
                    name,
                    CREATE,
                    want.tag,
                    effects=_create_effects(want.deployment),
                    new_weights=_all_weights(want.deployment),
                )
            )
            continue
        state = states.get(name)
        serving = (
            state
            if state is not None
            and state.is_hot_add
            and tag
            and tag.project_id == project.id
            and state.current_for(tag)
            else None
        )
        if (serving is not None and want.deploy_hash == serving.desired_hash) or (
            serving is None and _hashed_as(want, tag)
        ):
            if name in replace:
                actions.append(
                    Action(
                        name,
                        UPDATE,
                        want.tag,
                        have,
                        effects=(_cold_start(want.deployment),),
                        notes=(REPLACED,),
                        serving=serving,
                    )
                )
            else:
                notes = (_serving_note(serving),) if serving else ()
                actions.append(
                    Action(name, UNCHANGED, want.tag, deployed=have, notes=notes, serving=serving)
                )
            continue
        if tag and tag.project_id != project.id:
            # Another repository's deployer manages this app: never deploy over it.
            why = (
                f"an app of this name was deployed by another project (tag {have.tag}); apply "
                "leaves it alone"
            )
            hint = (
                "rename this deployment (`name:`), or, if this repository now owns it, set "
                f"{PROJECT_ENV} to the other project's name"
            )
            actions.append(Action(name, CONFLICT, want.tag, have, notes=(why, hint)))
            continue
        notes = []
        if tag is None:
            notes.append(
                f"deployed outside the deployer (tag {have.tag!r}); apply replaces it"
                if have.tag
                else "deployed outside the deployer (no tag); apply replaces it"
            )
        before = previous.get(name)
        if want.deployment.loads_adapters_dynamically and name not in replace:
            hot = hot_add_decision(before, want, tag, serving)
            if isinstance(hot, HotAdd) and no_hot_add:
                hot = no_hot_add
            if isinstance(hot, HotAdd):
                actions.append(_hot_add_action(name, want, have, hot, serving, state))
                continue
            notes.append(f"not a hot-add: {hot}")
        # Back to the deployed version's own configuration: only the hot-add's adapters change.
        reverted = serving is not None and _hashed_as(want, tag)
        changes = describe_changes(before, want) if before and not reverted else ()
        if serving is not None:
            changes = _unstaged(serving, want, before) + tuple(changes)
        if before is not None and tag and not _hashed_as(before, tag):
            notes.append(
                f"compared with commit {have.commit.rstrip('*')}, which Modal recorded for "
                f"v{have.number}; what was deployed differed from it (uncommitted "
                "changes?)"
            )
        if before is None:
            why = f" ({unread[name]})" if name in unread else ""
            notes.append(
                f"what is deployed could not be read back{why}, so only the hash is compared"
                if tag
                else "its configuration is unknown"
            )
        weights = _new_weights(changes) if before else _all_weights(want.deployment)
        actions.append(
            Action(
                name,
                UPDATE,
                want.tag,
                have,
                tuple(changes),
                _update_effects(before, want, changes),
                tuple(notes),
                weights,
                serving=serving,
            )
        )
    return Plan(tuple(actions), project, against, fallback)


# -- hot-add: adapters into a running dynamic deployment -----------------------------------------


@dataclass(frozen=True)
class HotAdd:
    """Adapters a running deployment can take with no restart, and how each changes."""

    changes: tuple[Change, ...]

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(c.what.removeprefix("adapter ") for c in self.changes)


def hot_add_decision(
    before: Desired | None, want: Desired, tag: Tag | None, serving: HotAddState | None
) -> HotAdd | str:
    """A HotAdd when the change from the deployed version (plus the hot-add serving since, if
    any) to `want` only adds adapters or gives existing ones a new source, both versions are
    dynamic, and vLLM's flags stay as they are; else why not, for the plan to say."""
    if before is None:
        return "what is deployed could not be read back, so the change cannot be told apart"
    if not before.deployment.loads_adapters_dynamically:
        return "the deployed version loads adapters only at start (adapter_loading: static)"
    if not _hashed_as(before, tag):
        return "what was deployed differed from the commit Modal recorded for it"
    if before.fixed_hash is None or before.fixed_hash != want.fixed_hash:
        return "settings besides the adapters change, and those need new containers"
    running = dict(serving.adapters if serving is not None else before.adapter_ids)
    wanted = dict(want.adapter_ids)
    if removed := [n for n in running if n not in wanted]:
        return (
            f"adapter{'s' * (len(removed) > 1)} {', '.join(removed)} removed; removing takes a "
            "full deploy"
        )
    if flags := _flag_changes(before.deployment, want.deployment):
        return (
            f"the adapters change vLLM's flags ({'; '.join(flags)}), which a running server "
            "cannot take"
        )
    changes = tuple(
        Change(f"adapter {n}", running.get(n), source)
        for n, source in wanted.items()
        if running.get(n) != source
    )
    if not changes:
        return "no adapter to stage, yet the deploy hash differs"
    return HotAdd(changes)


def _flag_changes(before: Deployment, after: Deployment) -> list[str]:
    """vLLM's flags that differ between the two versions (the adapters decide max-lora-rank)."""
    from deployer.vllm.argv import vllm_flags

    old, new = vllm_flags(before), vllm_flags(after)
    if old == new:
        return []
    was, now = dict(_flag_pairs(old)), dict(_flag_pairs(new))
    shown = [
        f"{flag} {was.get(flag, 'unset')} → {now.get(flag, 'unset')}"
        for flag in dict.fromkeys([*was, *now])
        if was.get(flag) != now.get(flag)
    ]
    return shown or ["their order or repetition"]


def _flag_pairs(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """(--flag, its value or "on") for each flag in a command line (`--flag=value` too)."""
    from deployer.checks.flags import options_passed

    pairs = []
    for option, values in options_passed(list(tokens)):
        flag, _, inline = option.partition("=")
        pairs.append((f"--{flag}", " ".join(filter(None, [inline, *values])) or "on"))
    return pairs


def _hot_add_action(
    name: str,
    want: Desired,
    have: Version,
    hot: HotAdd,
    serving: HotAddState | None,
    state: HotAddState | None,
) -> Action:
    notes = [_serving_note(serving)] if serving else []
    if state is not None and state.is_hot_add and serving is None:
        notes.append("the adapters volume records a hot-add onto an earlier version: ignored")
    effects = (
        f"stages {', '.join(hot.adapters)} into volume {dynamic_adapters_volume(name)} (a CPU "
        "function downloads them)",
        "running containers serve them on first request; no new app version",
    )
    return Action(
        name,
        HOT_ADD,
        want.tag,
        have,
        hot.changes,
        effects,
        tuple(notes),
        hot_added=hot.adapters,
        serving=serving,
    )


def _serving_note(serving: HotAddState) -> str:
    names = ", ".join(n for n, _ in serving.adapters) or "none"
    return (
        f"serves the adapters of a hot-add on top of its version ({names}); a full deploy "
        "renders them into the app"
    )


def _unstaged(serving: HotAddState, want: Desired, before: Desired | None) -> tuple[Change, ...]:
    """Adapters a hot-add staged that `want` no longer has and the deployed version's own
    configuration does not list (those its changes show): a full deploy takes them out."""
    kept = {a.name for a in want.deployment.adapters}
    if before is not None:
        kept |= {a.name for a in before.deployment.adapters}
    return tuple(
        Change(f"adapter {n}", source, None) for n, source in serving.adapters if n not in kept
    )


def with_upstream(plan: Plan, moves: Sequence[Move], unchecked: Mapping[str, str]) -> Plan:
    """`plan` noting, on each deployment's action, each locked branch or tag that has moved on
    the Hub since it was locked (`moves`), and in one line the sources whose upstream could not
    be checked (`unchecked`: repo@revision → why). The lock, not the plan, moves them: a note."""
    by_name: dict[str, list[str]] = {}
    for move in moves:
        by_name.setdefault(move.deployment, []).append(upstream_note(move))
    actions = tuple(
        dataclasses.replace(a, notes=a.notes + tuple(by_name[a.name])) if a.name in by_name else a
        for a in plan.actions
    )
    notes = plan.notes
    if unchecked:
        reasons = "; ".join(dict.fromkeys(unchecked.values()))
        notes += (
            f"upstream not checked for {len(unchecked)} locked branch(es) or tag(s) "
            f"({', '.join(unchecked)}): {reasons}",
        )
    return dataclasses.replace(plan, actions=actions, upstream=tuple(moves), notes=notes)


def upstream_note(move: Move) -> str:
    return (
        f"{move.what}: {move.revision} is now {_short(move.new)}, locked {_short(move.old)}: "
        f"run `deployer lock --upgrade {move.deployment}`"
    )


def _short(commit: str | None) -> str:
    return commit[:7] if commit else "unresolved"


# -- what changed --------------------------------------------------------------------------------


def facts(deployment: Deployment) -> dict[str, str]:
    """Everything a reviewer cares about, flattened to readable one-line strings."""
    return {printable(key): _brief(value) for key, value in _facts(deployment).items()}


def _brief(value: str) -> str:
    if len(value) <= SHOWN_CHARS:
        return printable(value)
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    # two long values still differ
    return f"{printable(value, SHOWN_CHARS)} ({len(value):,} characters, sha256 {digest})"


def _facts(deployment: Deployment) -> dict[str, str]:
    d = deployment
    out = {
        "base model": d.base_model.source.describe(),
        "served model name": d.base_model.served_name,
        "gpu": d.gpu.modal_spec,
        "vllm version": d.vllm.version,
        "image base": d.image.base,
        "image python": d.image.python,
        "image pip packages": ", ".join(d.image.pip) or "none",
        "auth": _auth(d),
        "secrets": ", ".join(d.secrets) or "none",
    }
    for adapter in d.adapters:
        out[f"adapter {adapter.name}"] = adapter.source.describe()
    for name, value in d.vllm.args:
        out[f"vllm flag --{name}"] = _shown(value)
    for key, value in d.image.env:
        out[f"image env {key}"] = value
    for key, value in vars(d.scaling).items():
        if value is not None:
            out[f"scaling {key}"] = str(value)
    out["requests per container"] = _requests_per_container(d)
    return out


def _requests_per_container(d: Deployment) -> str:
    """What `@modal.concurrent` says, which follows from the scaling, the GPU and vLLM's flags."""
    batching = concurrency(d)
    if batching.target_inputs is None:
        return f"up to {batching.max_inputs}"
    return f"up to {batching.max_inputs}, more containers above {batching.target_inputs}"


def _auth(d: Deployment) -> str:
    if d.auth.api_key_secret:
        return f"API key from Modal Secret {d.auth.api_key_secret}"
    return "Modal proxy auth" if d.auth.proxy else "none (public)"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def describe_changes(before: Desired, after: Desired) -> list[Change]:
    old, new = facts(before.deployment), facts(after.deployment)
    changes = [
        Change(key, old.get(key), new.get(key))
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    ]
    if len(changes) > SHOWN_CHANGES:
        more = len(changes) - SHOWN_CHANGES + 1
        changes = [
            *changes[: SHOWN_CHANGES - 1],
            Change(
                f"and {more:,} more settings",
                "as deployed",
                "changed (`deployer render` shows the whole app)",
            ),
        ]
    if not changes:
        if before.app.code_hash == after.app.code_hash:
            changes.append(Change("local folder contents", "uploaded before", "changed"))
        else:
            changes.append(
                Change("rendered app", "from an earlier template or deployer", "re-rendered")
            )
    return changes


IMAGE_FIELDS = ("vllm version", "image ")


def _all_weights(deployment: Deployment) -> tuple[str, ...]:
    return ("the base model", *(f"adapter {a.name}" for a in deployment.adapters))


def _new_weights(changes: Sequence[Change]) -> tuple[str, ...]:
    base = ("the base model",) if any(c.what == "base model" for c in changes) else ()
    return base + tuple(
        c.what for c in changes if c.what.startswith("adapter ") and c.after is not None
    )


def _update_effects(
    before: Desired | None, after: Desired, changes: Sequence[Change]
) -> tuple[str, ...]:
    effects = []
    if before is None or any(c.what.startswith(IMAGE_FIELDS) for c in changes):
        effects.append("image rebuild" if before else "image rebuild if the image changed")
    if downloads := _new_weights(changes):
        effects.append(_downloads(after.deployment, downloads))
    effects.append(_cold_start(after.deployment))
    return tuple(effects)


def _cold_start(deployment: Deployment) -> str:
    return f"new containers: cold start (up to {deployment.scaling.startup_timeout} s)"


def _create_effects(deployment: Deployment) -> tuple[str, ...]:
    return (
        "image build (shared with deployments of the same image)",
        _downloads(deployment, ("weights",)),
        f"cold start (up to {deployment.scaling.startup_timeout} s)",
    )


def _downloads(deployment: Deployment, what: Sequence[str]) -> str:
    when = (
        "into the cache volume before deploying"
        if deployment.cold_start.prefetch
        else "on first start (cold_start.prefetch is off)"
    )
    return f"downloads {', '.join(what)} {when}"


# -- reports -------------------------------------------------------------------------------------


def short_tag(tag: str | None) -> str:
    parsed = parse_tag(tag or "")
    return parsed.hash_prefix[:12] if parsed else (tag or "untagged")


def _version_text(v: Version | None) -> str:
    if v is None:
        return ""
    if v.number == 0:  # a git ref standing in for Modal
        return f"{short_tag(v.tag)} at {printable(v.commit, 40)}"
    commit = f", commit {printable(v.commit, 40)}" if v.commit else ""
    return f"v{v.number} {short_tag(v.tag)}{commit}"


def headline(plan: Plan) -> str:
    counts = [f"{plan.count(k)} to {k}" for k in (CREATE, UPDATE, HOT_ADD) if plan.count(k)]
    if plan.count(ORPHAN):
        counts.append(f"{plan.count(ORPHAN)} orphaned")
    if plan.count(CONFLICT):
        counts.append(f"{plan.count(CONFLICT)} in conflict with another project")
    body = ", ".join(counts) if counts else "no changes"
    return f"Plan: {body}; {plan.count(UNCHANGED)} unchanged (compared with {plan.against})."


def format_text(plan: Plan) -> str:
    lines = []
    if plan.fallback:
        lines.append(f"note: {plan.fallback}")
    lines += [f"note: {printable(note, NOTE_CHARS)}" for note in plan.notes]
    for a in plan.actions:
        detail = {
            CREATE: f"new app, tag {short_tag(a.tag)}",
            UPDATE: f"{_version_text(a.deployed)} → {short_tag(a.tag)}",
            HOT_ADD: f"{_version_text(a.deployed)}: {HOT_ADD_SHOWN}",
            UNCHANGED: _version_text(a.deployed),
            ORPHAN: _version_text(a.deployed),
            CONFLICT: _version_text(a.deployed),
        }[a.kind]
        lines.append(f"{SYMBOL[a.kind]} {a.kind:<9} {a.name}  ({detail})")
        # Changes and notes quote what Modal and the adapters volume record: each on one line,
        # or a line of it starting `::` would be a GitHub workflow command.
        for change in a.changes:
            lines.append(f"      {printable(str(change))}")
        for note in a.notes:
            lines.append(f"      note: {printable(note, NOTE_CHARS)}")
        if a.effects:
            lines.append(f"      means: {'; '.join(a.effects)}")
    lines.append(headline(plan))
    return "\n".join(lines)


def format_markdown(plan: Plan) -> str:
    """For a GitHub job summary or a pull-request comment."""
    lines = ["## Deployment plan", "", headline(plan), ""]
    if plan.fallback:
        lines += [f"> {md(plan.fallback)}", ""]
    for note in plan.notes:
        lines += [f"> {md(printable(note, NOTE_CHARS))}", ""]
    lines += [
        "| | deployment | action | deployed | what changes | means |",
        "|---|---|---|---|---|---|",
    ]
    for a in plan.actions:
        what = (
            "<br>".join(md(printable(str(c))) for c in a.changes)
            + ("<br>" if a.changes and a.notes else "")
            + "<br>".join(f"_{md(printable(n, NOTE_CHARS))}_" for n in a.notes)
        )
        kind = f"**{a.kind}**" + (" (no restart)" if a.kind == HOT_ADD else "")
        lines.append(
            f"| {SYMBOL[a.kind]} | `{a.name}` | {kind} | "
            f"{md(_version_text(a.deployed))} | {what} | {md('; '.join(a.effects))} |"
        )
    return "\n".join(lines) + "\n"


def md(text: str) -> str:
    """Plain text in a markdown table cell: no links, images, code or emphasis from the values."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", " ")
    return re.sub(r"([\\`*_\[\]!|~#])", r"\\\1", text)


def to_json(plan: Plan) -> dict:
    return {
        "project": plan.project.name,
        "against": plan.against,
        "fallback": plan.fallback,
        "has_changes": plan.has_changes,
        "actions": [
            {
                "name": a.name,
                "action": a.kind,
                "tag": a.tag,
                "deployed": {
                    "version": a.deployed.number,
                    "tag": a.deployed.tag,
                    "commit": a.deployed.commit,
                }
                if a.deployed
                else None,
                "changes": [
                    {"what": c.what, "before": c.before, "after": c.after} for c in a.changes
                ],
                "effects": list(a.effects),
                "notes": list(a.notes),
                "hot_add": {"adapters": list(a.hot_added), "restart": False}
                if a.kind == HOT_ADD
                else None,
            }
            for a in plan.actions
        ],
        "upstream": [
            {
                "deployment": m.deployment,
                "source": m.what,
                "revision": m.revision,
                "locked": m.old,
                "upstream": m.new,
            }
            for m in plan.upstream
        ],
        "notes": list(plan.notes),
    }
