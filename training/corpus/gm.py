"""General MIDI knowledge for the renders: which MTAT tags a program is, the soundfonts and
patch sets Debian ships, the instrumentations (solo, duo, ensemble) a score is rendered with,
drum patterns."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DRUM_STYLES", "ENSEMBLES", "SOUNDFONTS", "Ensemble", "available_soundfonts",
           "patch_programs", "program_tags"]

#: name -> (candidate paths, Debian package, licence of the soundfont)
SOUNDFONTS = {
    "fluidr3": (("/usr/share/sounds/sf2/FluidR3_GM.sf2",), "fluid-soundfont-gm", "MIT"),
    "musescore": (("/usr/share/sounds/sf3/MuseScore_General.sf3",
                   "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
                  "musescore-general-soundfont-small", "MIT"),
    "timgm6mb": (("/usr/share/sounds/sf2/TimGM6mb.sf2",), "timgm6mb-soundfont", "GPL-2"),
    "csound": (("/usr/share/sounds/sf2/sf_GMbank.sf2",), "csound-soundfont", "public-domain"),
    # GUS patches sampled from recorded instruments, played by TiMidity++ (render.synthesize)
    "freepats": (("/etc/timidity/freepats.cfg",), "freepats", "GPL-2+ with a composition exception"),
}


def available_soundfonts() -> dict[str, Path]:
    out = {}
    for name, (paths, _, _) in SOUNDFONTS.items():
        for p in paths:
            if Path(p).is_file():
                out[name] = Path(p)
                break
    return out


def patch_programs(cfg: str | Path) -> set[int]:
    """The melodic General MIDI programs (0-based) a TiMidity++ configuration's ``bank 0``
    lists. TiMidity++ also reads its default configuration, whose instruments fill the
    programs a patch set lacks, so a render meant to be the patch set's own uses only these."""
    programs, bank = set(), False
    for line in Path(cfg).read_text(errors="replace").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("bank", "drumset"):
            bank = words[0] == "bank" and words[1:2] == ["0"]
        elif bank and words[0].isdigit() and len(words) > 1:
            programs.add(int(words[0]))
    return programs


def program_tags(program: int, drums: bool = False) -> set[str]:
    """MTAT tags that a General MIDI program (0-based) is, as ground truth of a render."""
    if drums:
        return {"drums"}
    p = program
    if p <= 5:
        return {"piano"}
    if p == 6:
        return {"harpsichord"}
    if 16 <= p <= 23:
        return {"organ"}
    if 24 <= p <= 31:
        return {"guitar"}
    if p in (40, 110):
        return {"violin", "strings"}
    if p == 42:
        return {"cello", "strings"}
    if p in (41, 43, 44, 45) or 48 <= p <= 51:
        return {"strings"}
    if p == 46:
        return {"harp"}
    if p == 52:
        return {"choir", "choral"}
    if p in (53, 54):
        return {"voice", "choir"}
    if 72 <= p <= 75:
        return {"flute"}
    if 80 <= p <= 103:
        return {"synth", "electronic"}
    if p == 104:
        return {"sitar"}
    return set()


VOICE_PROGRAMS = (52, 53, 54)


@dataclass(frozen=True)
class Ensemble:
    """An instrumentation: programs for the top part, the inner parts (cycled) and the bottom
    part of a score; a tuple doubles a part; None drops it. ``drums``: a style of
    :data:`DRUM_STYLES` added under the score. ``classical``: whether the result still sounds
    like the score's classical origin (then the render is tagged ``classical``)."""
    name: str
    texture: str                      # solo | duo | ensemble
    top: tuple[int, ...] | None
    inner: tuple[int, ...] | None
    bottom: tuple[int, ...] | None
    drums: str | None = None
    classical: bool = True
    tempo: tuple[int, int] = (60, 110)

    def parts(self, n: int) -> list[tuple[int, ...] | None]:
        """Programs (a tuple: doubled) or None for each of ``n`` parts, top to bottom."""
        if n == 1:
            return [self.top or self.inner or self.bottom]
        out: list[tuple[int, ...] | None] = [self.top]
        for i in range(n - 2):
            out.append(None if self.inner is None else (self.inner[i % len(self.inner)],))
        out.append(self.bottom)
        return out


def _e(name, texture, top, inner, bottom, drums=None, classical=True, tempo=(60, 110)):
    t = lambda v: v if v is None or isinstance(v, tuple) else (v,)  # noqa: E731
    return Ensemble(name, texture, t(top), inner if inner is None or isinstance(inner, tuple)
                    else (inner,), t(bottom), drums, classical, tempo)


ENSEMBLES: tuple[Ensemble, ...] = (
    # solo: one instrument (a polyphonic one plays every part, a melodic one a single line)
    _e("piano", "solo", 0, 0, 0), _e("bright_piano", "solo", 1, 1, 1),
    _e("electric_piano", "solo", 4, 4, 4, classical=False),
    _e("harpsichord", "solo", 6, 6, 6), _e("nylon_guitar", "solo", 24, 24, 24),
    _e("steel_guitar", "solo", 25, 25, 25, classical=False),
    _e("clean_electric_guitar", "solo", 27, 27, 27, classical=False),
    _e("harp", "solo", 46, 46, 46), _e("church_organ", "solo", 19, 19, 19),
    _e("drawbar_organ", "solo", 16, 16, 16, classical=False),
    _e("violin", "solo", 40, None, None), _e("cello", "solo", None, None, 42),
    _e("flute", "solo", 73, None, None), _e("recorder", "solo", 74, None, None),
    _e("sitar", "solo", 104, None, None, classical=False, tempo=(50, 90)),
    _e("choir_aahs", "solo", 52, 52, 52, tempo=(50, 80)),
    _e("voice_oohs", "solo", 53, 53, 53, tempo=(50, 80)),
    _e("string_ensemble", "solo", 48, 48, 48), _e("slow_strings", "solo", 49, 49, 49),
    _e("synth_pad", "solo", 89, 89, 89, classical=False),
    _e("synth_lead", "solo", 81, None, None, classical=False),
    _e("distortion_guitar", "solo", 30, None, None, classical=False),
    _e("marimba", "solo", 12, 12, 12, classical=False),
    # duo: a melody and an accompaniment
    _e("violin_piano", "duo", 40, 0, 0), _e("flute_harp", "duo", 73, 46, 46),
    _e("flute_guitar", "duo", 73, 24, 24), _e("cello_piano", "duo", 0, 0, 42),
    _e("violin_harpsichord", "duo", 40, 6, 6), _e("oboe_harpsichord", "duo", 68, 6, 6),
    _e("voice_guitar", "duo", 53, 24, 24, classical=False),
    _e("flute_piano", "duo", 73, 0, 0), _e("violin_cello", "duo", 40, None, 42),
    _e("guitar_duo", "duo", 24, 25, 25, classical=False), _e("harp_cello", "duo", 46, 46, 42),
    _e("sitar_drone", "duo", 104, None, 89, classical=False, tempo=(50, 80)),
    _e("choir_organ", "duo", (52, 19), (52, 19), (52, 19), tempo=(50, 80)),
    # ensembles
    _e("string_quartet", "ensemble", 40, (40, 41), 42),
    _e("string_orchestra", "ensemble", 48, (48, 49), (48, 43)),
    _e("baroque_trio", "ensemble", 73, 40, (42, 6)),
    _e("wind_quintet", "ensemble", 73, (68, 71, 60), 70),
    _e("orchestra", "ensemble", (40, 73), (48, 60), (42, 43)),
    _e("brass", "ensemble", 56, (56, 60), 57, classical=False),
    _e("rock_band", "ensemble", 29, 30, 33, "rock", False, (100, 140)),
    _e("metal_band", "ensemble", 30, 30, 34, "rock", False, (130, 170)),
    _e("pop_band", "ensemble", 0, (4, 48), 33, "pop", False, (90, 120)),
    _e("synth_pop", "ensemble", 81, (89, 4), 38, "disco", False, (110, 128)),
    _e("electronic", "ensemble", 80, 90, 38, "dnb", False, (160, 176)),
    _e("jazz_combo", "ensemble", 65, 0, 32, "swing", False, (90, 160)),
    _e("piano_trio", "ensemble", 0, 0, 32, "swing", False, (80, 140)),
    _e("country", "ensemble", 110, 25, 33, "rock", False, (100, 140)),
    _e("latin", "ensemble", 73, 24, 32, "bossa", False, (110, 140)),
    _e("folk", "ensemble", 73, 24, 32, None, False, (80, 120)),
    _e("funk", "ensemble", 27, 4, 36, "funk", False, (90, 110)),
    _e("indian", "ensemble", 104, None, 89, "tabla_like", False, (60, 90)),
    _e("choir_orchestra", "ensemble", (52, 40), (52, 48), (52, 42), tempo=(50, 80)),
)
#: what a one-part score (a folk tune) can be played by: one melodic instrument, maybe drums
MELODY_ONLY = ("violin", "flute", "recorder", "sitar", "synth_lead", "distortion_guitar",
               "piano", "harpsichord", "nylon_guitar", "harp", "marimba")

#: 16-step patterns per bar: GM drum note -> steps ("x" loud, "o" soft)
DRUM_STYLES: dict[str, dict[int, str]] = {
    "rock": {36: "x.......x.x.....", 38: "....x.......x...", 42: "x.x.x.x.x.x.x.x."},
    "pop": {36: "x.....x.x.......", 38: "....x.......x...", 42: "xoxoxoxoxoxoxoxo",
            39: "............x..."},
    "disco": {36: "x...x...x...x...", 38: "....x.......x...", 46: "..x...x...x...x.",
              42: "x...x...x...x..."},
    "funk": {36: "x..x..x...x..x..", 38: "....x..o.o..x..o", 42: "xxxxxxxxxxxxxxxx"},
    "dnb": {36: "x.........x.....", 38: "....x.......x...", 42: "x.x.x.x.x.x.x.x.",
            51: "x...x...x...x..."},
    "swing": {51: "x..xx..xx..xx..x", 44: "....x.......x...", 36: "x.......x......."},
    "bossa": {36: "x..xx..xx..xx..x", 37: "..x..x....x..x..", 42: "x.x.x.x.x.x.x.x."},
    "halftime": {36: "x.......x.x.....", 38: "........x.......", 42: "x.x.x.x.x.x.x.x."},
    "breakbeat": {36: "x.x.......x.....", 38: "....x..o.o..x..o", 42: "x.x.x.x.x.x.xxx."},
    "tabla_like": {60: "x..x..x.x..x..x.", 61: "..o...o...o...oo", 62: "x.......x......."},
    "latin": {62: "x..x..x.x..x..x.", 63: "..x...x...x...x.", 56: "x.x.x.x.x.x.x.x.",
              36: "x.......x......."},
}
