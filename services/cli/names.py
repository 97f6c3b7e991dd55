"""Short names operators know (PC1, C2, 8MiB) for the protocol's enums and sizes, both ways."""

from __future__ import annotations

import re

from services.common import vocabulary
from services.common.proto.sectorstorage.v1 import common_pb2
from services.common.vocabulary import TASK_SPECS

TASK_SHORT: dict[int, str] = {int(tt): spec.short for tt, spec in TASK_SPECS.items()}

# Seal proof per sector size in bytes, and the Window PoSt type proving it.
SEAL_PROOFS = {
    2 << 10: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1,
    8 << 20: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1,
    512 << 20: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1,
    32 << 30: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1,
    64 << 30: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_64GIB_V1_1,
}
SECTOR_SIZES = {proof: size for size, proof in SEAL_PROOFS.items()}
SIZE_LABELS = {
    proof: ("2KiB" if size == 2048 else f"{size >> 20}MiB" if size < 1 << 30 else f"{size >> 30}GiB")
    for proof, size in SECTOR_SIZES.items()
}
WINDOW_POST = {
    common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1: common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1,
    common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1: common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_8MIB_V1,
    common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1: common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_512MIB_V1,
    common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1: common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_32GIB_V1,
    common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_64GIB_V1_1: common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_64GIB_V1,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])(i?)(B?))?\s*(B?)\s*$", re.IGNORECASE)
_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def task_short(task_type: common_pb2.TaskType.ValueType) -> str:
    return TASK_SHORT.get(task_type, common_pb2.TaskType.Name(task_type).removeprefix("TASK_TYPE_"))


def parse_task_type(text: str) -> common_pb2.TaskType.ValueType:
    """'PC1', 'pc1', 'PRE_COMMIT_1' or 'TASK_TYPE_PRE_COMMIT_1' -> the task type (the fleet's one
    parser, services/common/vocabulary.py)."""
    return common_pb2.TaskType.ValueType(int(vocabulary.parse_task_type(text)))


def parse_size(text: str) -> int:
    """'2KiB', '8MiB', '1.5GiB', '8M', '4096' -> bytes in binary units (1 KiB = 1024 B); '8MB',
    '1GB' are SI units (1 MB = 1,000,000 B), as everywhere else."""
    match = _SIZE.match(text)
    if not match or (match.group(2) and match.group(5)):
        raise ValueError(f"can't parse size {text!r}: use bytes or a number with KiB, MiB, GiB, TiB (e.g. 8MiB)")
    number, prefix, binary, b = match.group(1), (match.group(2) or "").upper(), match.group(3), match.group(4)
    if prefix and b and not binary:  # "8MB": SI
        return int(float(number) * 1000 ** (" KMGTP".index(prefix)))
    return int(float(number) * _MULT[prefix])


def seal_proof(text: str) -> common_pb2.RegisteredSealProof.ValueType:
    """A sector size ('2KiB', '8MiB', '512MiB', '32GiB', '64GiB') -> its seal proof type."""
    n = parse_size(text)
    if n not in SEAL_PROOFS:
        hint = ""
        si = re.match(r"^\s*(\d+)\s*([KMGTP])B\s*$", text, re.IGNORECASE)
        if si:
            hint = f" ({text.strip()} is {n:,} bytes in SI units; sector sizes are binary: {si.group(1)}{si.group(2).upper()}iB?)"
        raise ValueError(f"no sector size {text!r}{hint}: use one of 2KiB, 8MiB, 512MiB, 32GiB, 64GiB")
    return SEAL_PROOFS[n]


def file_type_name(value: common_pb2.SectorFileType.ValueType) -> str:
    return common_pb2.SectorFileType.Name(value).removeprefix("SECTOR_FILE_TYPE_").lower()
