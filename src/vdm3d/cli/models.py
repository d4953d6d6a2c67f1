"""`vdm3d models list | info NAME | verify NAME [--path FOLDER]`: which backbones and depth estimators exist, which are installed, and
where weights go.

Nothing here imports diffusers unless ``info`` is asked about a hub model (to read its adapter's
process); listing is instant. ``verify`` reads every config and safetensors header of a model folder, as a
load would before building the model, and prints one line per problem (exit 2 if any).
"""

from __future__ import annotations

from vdm3d.cli.main import dispatch

HELP = "list the backbones (embedded tiny and hub), their cards, and where hub weights go"
#: the examples of `vdm3d models --help`, in order; a subcommand's page shows the lines its own needs
EXAMPLES = {
    "list": "vdm3d models list                      # every backbone and whether its weights are here",
    "info": "vdm3d models info sv3d-p               # its card, and the `hf download` command for its weights",
    "verify": "vdm3d models verify sv3d-p             # after the download: one line per problem, exit 2 if any",
    "convert": "vdm3d models convert V3D.ckpt v3d/ --layout v3d --base svd-xt/ --trust-pickle",
}
CONVERT_NOTE = ("inputs: V3D.ckpt is the checkpoint as its authors publish it; svd-xt/ the diffusers folder of "
                "SVD-XT (`vdm3d models info svd-xt` says where to download it).")


def _page(keys) -> str:
    note = f"{CONVERT_NOTE}\n\n" if "convert" in keys else ""
    return note + "examples:\n" + "\n".join(f"  {EXAMPLES[k]}" for k in keys)


def list_models() -> None:
    """List every backbone: name, kind, whether its weights are present, and what it does."""
    from vdm3d.models import registry

    rows = []
    for name in registry.names():
        kind, key = registry._resolve(name)
        if kind == "tiny":
            card = registry.info(name)
            held = card.get("heldout", {})
            desc = str(
                card.get("description")
                or f"embedded {card['model']} ({card.get('steps', '?')} training steps"
                + (f", held-out PSNR {held['psnr_db']} dB)" if "psnr_db" in held else ")")
            )
            where = "package"
        else:
            desc = registry._entry(key).description
            where = registry.installed(key) or "not installed"
        rows.append((name, kind, where, desc))
    width = max(len(r[0]) for r in rows) if rows else 4
    print(f"{'name':<{width}}  kind  description")
    for name, kind, where, desc in rows:
        # the weights' place on its own line, whole: a path cut to a column width names no folder
        print(f"{name:<{width}}  {kind:<4}  {desc}\n{'':<{width}}        weights: {where}")
    print(
        f"\nhub weights are looked for in {registry.models_root()}/<name> "
        f"(set ${registry.ENV_FOLDER} to move it), "
        "then in the Hugging Face cache; `vdm3d models info NAME` shows the download command."
    )


def info(name: str, /) -> None:
    """Show the card of one backbone: description, process, slots, files, and where its weights go.

    Args:
        name: a name from `vdm3d models list`.
    """
    from vdm3d.models import registry

    card = registry.info(name)
    width = max(len(k) for k in card)
    for key, value in card.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        print(f"{key:<{width}}  {value}")


def verify(name: str, /, *, path: str | None = None) -> int:
    """Check a hub model's folder the way a job's load would, without building the model: every part it needs
    is there, every JSON file parses, configs are of the right class and field types, no weights are
    pickle-only, no safetensors file is truncated. One line per problem; exit status 2 if any.

    Args:
        name: a name from `vdm3d models list`.
        path: the folder to check instead of the model's own place (what a job's --anchor-path would give).
    """
    from vdm3d.models import registry

    where, problems = registry.verify(name, path)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{name}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in {where}; a job would refuse "
              "to load it.")
        return 2
    print(f"{name}: {where} looks complete (configs parse, weights are whole safetensors)")
    return 0


def main(argv, prog: str = "vdm3d models"):
    from vdm3d.cli.models_convert import convert

    pages = {"": _page(EXAMPLES), "list": _page(["list"]), "info": _page(["info"]),
             "verify": _page(["info", "verify"]), "convert": _page(["convert"])}
    return dispatch({"list": list_models, "info": info, "verify": verify, "convert": convert}, argv, prog,
                    description=HELP, examples=pages)
