"""The Debian packages the corpus takes real recordings from, and the ones it must never touch.

Each :class:`Source` is one Debian package (or a part of one): which of its files are music
(``include`` patterns over the package's paths, without the leading ``./``; ``pk3:`` entries
reach inside a zip archive), its licence as checked in the package's ``copyright`` file, and
package-level style notes. ``weak_tags`` are guesses for the whole package, never checked per
track; the teacher labels the audio.

:data:`RESERVED` packages are kept for an independent evaluation (issue #12): the builder refuses
them by name, whether they come from this table, ``--only`` or a user's source list.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from rt_tagger.errors import RtTaggerError

__all__ = ["RESERVED", "SOURCES", "CorpusError", "Source", "check_allowed", "generic_source",
           "select"]


class CorpusError(RtTaggerError):
    """A corpus cannot be built as asked (a reserved package, an unknown source, a tool missing)."""


#: Packages held out for an independent evaluation: never downloaded, never used.
RESERVED = frozenset((
    "gcompris-qt-data", "0ad-data", "0ad-data-common", "warmux-data", "enigma-data",
    "lincity-ng-data", "trackballs-data", "trackballs-music", "sonic-pi-samples",
    "neverball-common", "neverball-data", "frozen-bubble-data", "fillets-ng-data",
    "freedink-data", "lordsawar-data", "openarena-088-data", "openarena-data", "zaz-data",
    "freeorion-data", "pathological", "powermanga-data", "rrootage-data", "scorched3d-data",
    "solarwolf", "torus-trooper-data", "tecnoballz-data", "ri-li-data", "freeciv-data",
    "alienblaster-data", "asc-music",
))
_RESERVED_PREFIX = ("wesnoth",)  # every wesnoth* (music) package


def reserved_reason(name: str) -> str | None:
    n = name.strip().lower()
    if n in RESERVED:
        return f"{n} is reserved for the independent evaluation of issue #12"
    if n.startswith(_RESERVED_PREFIX):
        return (f"{n}: every wesnoth* package is reserved for the independent evaluation of "
                "issue #12")
    return None


def check_allowed(*names: str) -> None:
    """Raise :class:`CorpusError` naming the reason if any name is a reserved package."""
    for name in names:
        why = reserved_reason(name)
        if why:
            raise CorpusError(f"refusing package {name!r}: {why}")


@dataclass(frozen=True)
class Source:
    key: str                       # the manifest's ``source`` (a split unit of the loader)
    package: str                   # the Debian package
    include: tuple[str, ...] = ()  # fnmatch patterns of package paths; () = any audio file
    exclude: tuple[str, ...] = ()  # fnmatch patterns of base names to skip
    license: str = ""              # "" = read the License: fields of the copyright file
    weak_tags: str = ""
    style: str = ""
    kind: str = "music"            # music | fof (Frets on Fire song folders: mix and stems)
    tags: str = ""                 # ground truth for every file, rarely known
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        check_allowed(self.package, self.key)


AUDIO_EXT = (".ogg", ".opus", ".mp3", ".flac", ".wav", ".it", ".s3m", ".xm", ".mod")


def generic_source(package: str) -> Source:
    """A source for a package the table does not know: every audio file of 45 s or more."""
    check_allowed(package)
    key = re.sub(r"-(data|music|musics|common)$", "", package)
    return Source(key, package, style=f"audio files of Debian package {package} (user-chosen)")


def _s(key, package, include, license, weak="", style="", exclude=(), **kw):
    return Source(key, package, tuple(include), tuple(exclude), license, weak, style, **kw)


_G = "usr/share/games/"
SOURCES: tuple[Source, ...] = (
    # --- the 24 soundtracks of the first builder
    _s("ufoai", "ufoai-music", ["pk3:usr/share/games/ufoai/base/0music.pk3:music/*.ogg"],
       "GPL-2+ (some tracks CC-BY-SA-3.0 / CC-BY-3.0 / PD)", "no vocals",
       "sci-fi score: cinematic orchestral, dark ambient, electronic/industrial"),
    _s("warzone2100", "warzone2100-music", [_G + "warzone2100/music/*.opus",
                                            _G + "warzone2100/music/albums/*/*.opus"],
       "GPL-2+ (albums: CC-BY-SA-3.0 or GPL-2+)", "electronic;no vocals",
       "RTS soundtrack: electronic/industrial, cinematic hybrid"),
    _s("nexuiz", "nexuiz-music", ["pk3:usr/share/games/nexuiz/data/music.pk3:sound/cdtracks/*.ogg"],
       "GPL-2+", "electronic;techno;beat;no vocals", "arena shooter: techno, industrial, d&b"),
    _s("planetblupi", "planetblupi-music-ogg", ["usr/share/planetblupi/music/*.ogg"], "GPL-3+",
       "no vocals", "children's game, long loops; light orchestral/synth"),
    _s("singularity", "singularity-music", [_G + "singularity/music/*.ogg",
                                            _G + "singularity/music/*/*.ogg"],
       "CC-BY-SA-3.0", "electronic;synth;ambient;no vocals", "tracker electronic/ambient"),
    _s("blobwars", "blobwars-data", [_G + "blobwars/music/*"], "CC-BY-3.0 / CC-BY-SA-3.0",
       "electronic;techno;synth;no vocals", "trance/techno/ambient", exclude=("*.tags",)),
    _s("colobot", "colobot-common-sounds", [_G + "colobot/music/*.ogg"], "GPL-3+",
       "electronic;ambient;no vocals", "sci-fi: electronic/ambient, some orchestral"),
    _s("supertuxkart", "supertuxkart-data", [_G + "supertuxkart/data/music/*.ogg"],
       "CC-BY-SA-3.0 / CC-BY-3.0 / CC0 / GPL (per track)", "",
       "kart racer: celtic, latin, egyptian, electronic, rock, orchestral, jazzy",
       exclude=("*_fast.ogg", "*_f.ogg")),
    _s("supertux", "supertux-data", [_G + "supertux2/music/*/*.ogg"], "GPL-2+ / CC-BY-SA",
       "no vocals", "platformer: chiptune/synth-pop, light orchestral"),
    _s("naev", "naev-data", ["usr/share/naev/dat/snd/music/*.ogg"],
       "GPL-3 / GPL-2+ / CC-BY-3.0 / CC-BY-SA-3.0 / PD (per track)", "no vocals",
       "space game: ambient, orchestral, electronic"),
    _s("hedgewars", "hedgewars-data", [_G + "hedgewars/Data/Music/*.ogg"],
       "GPL-2 (some CC-BY-SA-3.0)", "", "themed: oriental, pirate, jungle, rock, snow"),
    _s("megaglest", "megaglest-data", [_G + "megaglest/data/core/menu/music/*.ogg",
                                       _G + "megaglest/techs/megapack/factions/*/music/*.ogg"],
       "CC-BY-SA-3.0", "no vocals", "RTS factions: orchestral/ethnic"),
    _s("freedroidrpg", "freedroidrpg-data", ["usr/share/freedroidrpg/data/sound/music/*.ogg"],
       "GPL-2+", "electronic;no vocals", "electronic: ambient, industrial, d&b"),
    _s("flare", "flare-game", [_G + "flare/mods/fantasycore/music/*.ogg"], "CC-BY-SA-3.0+",
       "classical;strings;no vocals", "orchestral fantasy RPG"),
    _s("widelands", "widelands-data", [_G + "widelands/data/music/*.ogg"],
       "GPL-2+ (some CC-BY-SA-3.0)", "", "medieval/orchestral folk; a few thrash-metal tracks"),
    _s("openclonk", "openclonk-data", [_G + "openclonk/Music.ocg/*.ogg"], "CC-BY-3.0", "",
       "rock, house, reggae, ambient, orchestral"),
    _s("pingus", "pingus-data", [_G + "pingus/data/music/*.it", _G + "pingus/data/music/*.s3m"],
       "GPL-2+", "no vocals", "tracker modules: playful synth/chip tunes"),
    _s("drascula", "drascula-music", ["usr/share/scummvm/drascula/audio/*.ogg"],
       "Drascula-License (BSD-like)", "", "comic horror: organ, jazz, rock, orchestral"),
    _s("hyperrogue", "hyperrogue-music", ["usr/share/hyperrogue/music/*.ogg"], "CC-BY-SA-3.0",
       "ambient;no vocals", "atmospheric game music"),
    _s("asterisk_moh", "asterisk-moh-opsound-wav", ["usr/share/asterisk/moh/*.wav"],
       "CC-BY-SA-3.0", "", "music on hold: lounge/jazzy, downtempo, acoustic"),
    _s("xmoto", "xmoto-data", [_G + "xmoto/Textures/Musics/*.ogg"], "GPL-2+", "",
       "upbeat rock/electronic"),
    _s("btanks", "btanks-data", [_G + "btanks/data/tunes/*.ogg"], "GPL-2+ with exception", "",
       "country, horror, chiptune"),
    _s("pushover", "pushover-data", ["usr/share/pushover/themes/*.ogg"], "GPL-3+", "",
       "themed: aztec, castle, electro, greek, japanese, space"),
    _s("etr", "extremetuxracer-data", [_G + "etr/music/*.ogg"], "GPL-2+", "", "light game music"),
    _s("fof_muldjord", "fretsonfire-songs-muldjord", [_G + "fretsonfire/data/songs/*/*/*.ogg"],
       "CC-BY-SA-3.0", "metal;guitar;drums", "death metal (Muldjord)", kind="fof"),
    _s("fof_sectoid", "fretsonfire-songs-sectoid", [_G + "fretsonfire/data/songs/*/*/*.ogg"],
       "Expat", "metal;rock;guitar;drums", "instrumental heavy metal/rock (Sectoid)", kind="fof"),
    # --- new packages (licences read from each copyright file)
    _s("marsshooter", "marsshooter-data", [_G + "marsshooter/audio/music/*.ogg",
                                           _G + "marsshooter/audio/menu.ogg"],
       "", "",
       "space shooter: rock, electronic, orchestral (Ezer Ev et al.)"),
    _s("ardentryst", "ardentryst", [_G + "ardentryst/Music/*.ogg"], "",
       "no vocals", "action RPG: orchestral/folk, ambient"),
    _s("redeclipse", "redeclipse-data", ["usr/share/games/redeclipse/data/sounds/music/*.ogg"],
       "", "electronic;no vocals", "arena shooter: electronic, rock, dubstep"),
    _s("freecol", "freecol", ["usr/share/games/freecol/default/resources/music/*/*.ogg"], "",
       "no vocals", "colonial strategy: folk, baroque, orchestral"),
    _s("noiz2sa", "noiz2sa-data", [_G + "noiz2sa/sounds/*.ogg"], "BSD-2-clause",
       "electronic;techno;no vocals", "shmup techno (Kenta Cho)"),
    _s("parsec47", "parsec47-data", [_G + "parsec47/sounds/*.ogg"], "BSD-2-clause",
       "electronic;techno;no vocals", "shmup techno (Kenta Cho)"),
    _s("titanion", "titanion-data", [_G + "titanion/sounds/musics/*.ogg"], "BSD-2-clause",
       "electronic;no vocals", "shmup electronic (Kenta Cho)"),
    _s("tumiki", "tumiki-fighters-data", [_G + "tumiki-fighters/sounds/*.ogg"], "BSD-2-clause",
       "electronic;no vocals", "shmup electronic (Kenta Cho)"),
    _s("gunroar", "gunroar-data", [_G + "gunroar/sounds/musics/*.ogg"], "BSD-2-clause",
       "electronic;no vocals", "shmup electronic (Kenta Cho)"),
    _s("mucade", "mu-cade-data", [_G + "mu-cade/sounds/musics/*.ogg"], "BSD-2-clause",
       "electronic;no vocals", "shmup electronic (Kenta Cho)"),
    _s("valrick", "val-and-rick-data", [_G + "val-and-rick/sounds/musics/*.ogg"], "",
       "no vocals", "platformer chip/synth"),
    _s("tuxmath", "tuxmath-data", ["usr/share/tuxmath/sounds/*.ogg",
                                   "usr/share/tuxmath/sounds/*.mod"],
       "", "no vocals", "education game: electronic, chiptune, tracker modules"),
    _s("tuxtype", "tuxtype-data", ["usr/share/tuxtype/sounds/*.ogg",
                                   "usr/share/tuxtype/sounds/*.mod"],
       "GPL-2", "no vocals", "education game: ambient, chiptune, tracker modules"),
    _s("lugaru", "lugaru-data", [_G + "lugaru/Sounds/Music*.ogg"], "CC-BY-SA-3.0", "no vocals",
       "action game: orchestral/tribal drums"),
    _s("caveexpress", "caveexpress-data", [_G + "caveexpress/sounds/*.ogg"], "", "",
       "cartoon caveman game music"),
    _s("holotz", "holotz-castle-data", [_G + "holotz-castle/game/sound/*.wav"], "", "",
       "platformer: light orchestral"),
    _s("pinball", "pinball-data", [_G + "pinball/*/*.ogg"], "", "", "pinball table themes"),
    _s("funnyboat", "funnyboat", [_G + "funnyboat/data/*.ogg"], "", "", "jazzy/rock game tune"),
    _s("raincat", "raincat-data", [_G + "raincat/data/music/*.ogg"], "", "", "jazzy game tune"),
    _s("criticalmass", "criticalmass-data", [_G + "criticalmass/*.xm"], "", "electronic",
       "tracker module (xm)"),
    _s("tomatoes", "tomatoes-data", ["usr/share/tomatoes/music/*.it"], "", "electronic",
       "tracker module (it)"),
    _s("penguincmd", "penguin-command", [_G + "penguin-command/sound/*.s3m",
                                         _G + "penguin-command/sound/*.ogg"], "", "",
       "tracker modules (s3m)"),
    _s("njam", "njam-data", [_G + "njam/data/*.xm", _G + "njam/data/*.s3m"], "", "",
       "tracker modules"),
    _s("spacezero", "spacezero", ["usr/share/spacezero/sounds/music.wav"], "", "",
       "space strategy: electronic"),
    _s("pachi", "pachi-data", ["usr/share/pachi/music/*.s3m"], "GPL-2+", "",
       "platformer tracker modules (s3m)"),
    _s("cuyo", "cuyo-data", [_G + "cuyo/sounds/*.it"], "GPL-2+", "", "puzzle game tracker module"),
    _s("cube2", "cube2-data", [_G + "cube2/packages/music/*.ogg"], "", "", "shooter: rock"),
)
#: Game MIDI files rendered with their own General MIDI programs (see ``render``).
MIDI_SOURCES = (
    ("openttd-openmsx", "usr/share/games/openttd/baseset/openmsx/*.mid", "GPL-2"),
    ("planetblupi-music-midi", "usr/share/planetblupi/music/*.mid", "GPL-3+"),
)
#: Real human speech (telephone prompts), one speaker per language.
IVR = (("en", "asterisk-core-sounds-en-wav"), ("it", "asterisk-core-sounds-it-wav"),
       ("fr", "asterisk-core-sounds-fr-wav"), ("es", "asterisk-core-sounds-es-wav"),
       ("ru", "asterisk-core-sounds-ru-wav"))


def select(only: list[str] | None = None, extra_packages: list[str] = ()) -> list[Source]:
    """The table's sources, narrowed to ``only`` (keys or package names; a package the table
    lacks becomes a generic source), plus ``extra_packages``. Reserved names raise."""
    check_allowed(*(only or ()), *extra_packages)
    out = list(SOURCES)
    if only:
        want = set(only)
        out = [s for s in SOURCES if s.key in want or s.package in want]
        known = {s.key for s in out} | {s.package for s in out}
        out += [generic_source(n) for n in only if n not in known
                and n not in _KNOWN_OTHER]
    out += [generic_source(p) for p in extra_packages if p not in {s.package for s in out}]
    return out


#: names ``--only`` may also give that are not soundtrack sources (renders, speech, singing)
_KNOWN_OTHER = frozenset(("renders", "game_midi", "drum_loops", "sung", "speech", "ivr"))
