"""Safe unpacking: nothing an archive holds may land outside the folder it is unpacked into.

Every member is checked before it is written: absolute names, ``..``, links (symbolic or hard) whose
target is absolute or leaves the folder, device files and FIFOs are refused with one line naming the
archive and the member. Tar members are then extracted with ``filter="data"`` (PEP 706) as a second line of
defence. The caller unpacks into a fresh temporary folder that it renames into place, so a refused or
interrupted unpack leaves no half folder.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from longify.errors import LongifyError


def _check_name(archive: Path, name: str) -> None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise LongifyError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise LongifyError(f"{archive}: member {name!r} leaves the target folder ('..'); refused")


def _inside(base: str, target: str) -> bool:
    """Whether ``target`` (relative to the folder of a member named ``base``) stays in the root folder."""
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
    if (member.issym() and not _inside(member.name, member.linkname)) or (
        member.islnk() and not _inside("", member.linkname)  # a hard link's target is relative to the root
    ):
        raise LongifyError(
            f"{archive}: member {member.name!r} links to {member.linkname!r}, outside the target folder; refused"
        )
    if member.isdev() or member.isfifo():
        raise LongifyError(f"{archive}: member {member.name!r} is a device file or FIFO; refused")


def unpack_tar(archive: str | Path, dest: str | Path) -> list[str]:
    """Unpack a tar (plain or compressed) into ``dest`` (a fresh folder); the regular files' names."""
    archive, dest = Path(archive), Path(dest)
    names = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # one pass: a multi-GB .tar.gz is decompressed once
                check_tar_member(archive, member)
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as err:
                    raise LongifyError(f"{archive}: member {member.name!r} refused ({err})") from None
                if member.isfile():
                    names.append(member.name)
    except (tarfile.TarError, EOFError) as err:
        raise LongifyError(f"{archive}: not a readable tar archive ({err})") from None
    return names


def unpack_zip(archive: str | Path, dest: str | Path) -> list[str]:
    """Unpack a zip into ``dest`` (a fresh folder) after checking every member's name and type."""
    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                    raise LongifyError(f"{archive}: member {info.filename!r} is a link or device; refused")
            for info in infos:
                zf.extract(info, dest)
            return [i.filename for i in infos if not i.is_dir()]
    except zipfile.BadZipFile as err:
        raise LongifyError(f"{archive}: not a readable zip archive ({err})") from None


def unpack(archive: str | Path, dest: str | Path, kind: str) -> list[str]:
    """Unpack ``archive`` of registry ``kind`` into ``dest``."""
    return unpack_zip(archive, dest) if kind == "zip" else unpack_tar(archive, dest)
