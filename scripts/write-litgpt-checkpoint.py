#!/usr/bin/env python3
"""Writes a litgpt checkpoint with random weights, in the layout torch.save gives fabric's state
(a zip of ARCHIVE/data.pkl, protocol 2, and one stored ARCHIVE/data/KEY entry per storage),
without torch: the pickle is made by Python's own pickler with stand-ins for the two torch
globals it names, so its opcodes and memo numbering are torch's.

    write-litgpt-checkpoint.py --arch tiny_LLaMA_0_3b --output iter-002000-ckpt.pth
    write-litgpt-checkpoint.py --config cfg.json --layout model --output lit_model.pth
    write-litgpt-checkpoint.py --arch tiny_LLaMA_0_3b --optimizer --output full.pth

--layout fabric (default) writes {model, [optimizer,] hparams, iter_num, step_count} with the
architecture in hparams; --layout model writes the state dict alone, as lit_model.pth. Weights
are random bytes (float32 bit patterns, NaNs included): a conversion copies bits, never reads
them as numbers. --check-pickle FILE.pth compares the pickle written for --config with that
checkpoint's, byte for byte: with --layout model it is identical to the fixtures' lit_model.pth
(fixtures/litgpt/*); the fabric wrapper around the same state dict is not byte-checked (torch's
optimizer state holds more than the moments written here).
"""

import argparse
import collections
import io
import json
import os
import pickle
import sys
import types
import zipfile

ARCHS = {
    # name: (n_layer, n_head, n_embd, n_query_groups, intermediate_size), as ProX's config.py
    "tiny_LLaMA_0_3b": (24, 16, 1280, 1, 2048),
    "tiny_LLaMA_0_7b": (24, 24, 1536, 2, 4864),
    "tiny_LLaMA_1b": (22, 32, 2048, 4, 5632),
    "tiny_LLaMA_1_7b": (24, 32, 2048, 32, 8192),
}

# Stand-ins for the globals torch's pickle names; only their names reach the file.
torch_module = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called: this script only writes")


FloatStorage.__module__ = "torch"
torch_module.FloatStorage = FloatStorage
_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch_module._utils = torch_utils
sys.modules.setdefault("torch", torch_module)
sys.modules.setdefault("torch._utils", torch_utils)


class Storage:
    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage = storage
        self.shape = tuple(shape)

    def __reduce__(self):
        stride = []
        step = 1
        for size in reversed(self.shape):
            stride.append(step)
            step *= size
        return (
            _rebuild_tensor_v2,
            (self.storage, 0, self.shape, tuple(reversed(stride)), False, collections.OrderedDict()),
        )


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def config_from(args):
    if args.config:
        with open(args.config) as f:
            return json.load(f)
    n_layer, n_head, n_embd, groups, inter = ARCHS[args.arch]
    return {
        "name": args.arch,
        "block_size": 2048,
        "vocab_size": 32000,
        "padded_vocab_size": 32000,
        "n_layer": n_layer,
        "n_head": n_head,
        "n_embd": n_embd,
        "n_query_groups": groups,
        "intermediate_size": inter,
        "norm_eps": 1e-05,
        "rope_base": 10000,
        "_mlp_class": "LLaMAMLP",
    }


def shapes(cfg):
    e, v, i = cfg["n_embd"], cfg["padded_vocab_size"], cfg["intermediate_size"]
    head = e // cfg["n_head"]
    qkv = (cfg["n_head"] + 2 * cfg["n_query_groups"]) * head
    out = [("transformer.wte.weight", (v, e))]
    for l in range(cfg["n_layer"]):
        h = f"transformer.h.{l}."
        out += [
            (h + "norm_1.weight", (e,)),
            (h + "attn.attn.weight", (qkv, e)),
            (h + "attn.proj.weight", (e, e)),
            (h + "norm_2.weight", (e,)),
            (h + "mlp.fc_1.weight", (i, e)),
            (h + "mlp.fc_2.weight", (i, e)),
            (h + "mlp.proj.weight", (e, i)),
        ]
    out += [("transformer.ln_f.weight", (e,)), ("lm_head.weight", (v, e))]
    return out


def build(cfg, layout, optimizer):
    """The object to pickle, and the storages in key order."""
    storages = []

    def tensor(shape):
        numel = 1
        for d in shape:
            numel *= d
        storage = Storage(str(len(storages)), numel)
        storages.append(storage)
        return Tensor(storage, shape)

    model = {name: tensor(shape) for name, shape in shapes(cfg)}
    if layout == "model":
        return model, storages
    state = {"model": model}
    if optimizer:
        params = list(model.values())
        state["optimizer"] = {
            "state": {
                i: {"step": tensor(()), "exp_avg": tensor(p.shape), "exp_avg_sq": tensor(p.shape)}
                for i, p in enumerate(params)
            },
            "param_groups": [
                {
                    "lr": 0.0005,
                    "betas": (0.9, 0.95),
                    "eps": 1e-08,
                    "weight_decay": 0.1,
                    "amsgrad": False,
                    "maximize": False,
                    "foreach": None,
                    "capturable": False,
                    "differentiable": False,
                    "fused": None,
                    "decoupled_weight_decay": True,
                    "params": list(range(len(params))),
                }
            ],
        }
    state["hparams"] = dict(cfg)
    state["iter_num"] = 2000
    state["step_count"] = 500
    return state, storages


def pickled(obj):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", choices=sorted(ARCHS))
    source.add_argument("--config", help="a litgpt config JSON (name, n_layer, ...)")
    parser.add_argument("--layout", choices=["fabric", "model"], default="fabric")
    parser.add_argument("--optimizer", action="store_true", help="add AdamW moments (fabric layout)")
    parser.add_argument("--output")
    parser.add_argument("--check-pickle", metavar="FILE.pth")
    args = parser.parse_args()

    cfg = config_from(args)
    state, storages = build(cfg, args.layout, args.optimizer)
    data_pkl = pickled(state)
    if args.check_pickle:
        with zipfile.ZipFile(args.check_pickle) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            theirs = z.read(name)
        same = theirs == data_pkl
        print(f"data.pkl {'identical to' if same else 'DIFFERS from'} {args.check_pickle} ({len(data_pkl)} bytes)")
        sys.exit(0 if same else 1)
    if not args.output:
        parser.error("--output is required")
    archive = os.path.splitext(os.path.basename(args.output))[0]
    chunk = 1 << 24
    with zipfile.ZipFile(args.output, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr(f"{archive}/data.pkl", data_pkl)
        z.writestr(f"{archive}/.format_version", "1")
        z.writestr(f"{archive}/.storage_alignment", "64")
        z.writestr(f"{archive}/byteorder", "little")
        for storage in storages:
            info = zipfile.ZipInfo(f"{archive}/data/{storage.key}", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                left = storage.numel * 4
                while left:
                    n = min(left, chunk)
                    f.write(os.urandom(n))
                    left -= n
    print(f"{args.output}: {sum(s.numel for s in storages) * 4 / 1e9:.2f} GB of float32 in {len(storages)} storages")


if __name__ == "__main__":
    main()
