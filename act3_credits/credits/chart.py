"""The Spend chart as pixels: plain Python (no bpy), so it can be tested and drawn the same way anywhere.

What it shows, for the current billing period, one column a day: above, what has been spent since
the period began (cumulative), stacked by tier, the monthly allocation as a solid line across and
the forecast, a dashed line from now to the billing date at the runway's pace (flat from the moment
the credits run out), its top 8/7 of the highest of the three; below, the spend of each day,
stacked by tier, its top 8/7 of the busiest day.

Why pixels and not the `gpu` module: an image shown with `layout.template_icon` is laid out by
Blender like any widget (it scrolls, folds with its panel and keeps its place among the rows),
while a draw handler on the sidebar region has to guess where the panel is (Blender does not tell
Python a panel's position or scroll) and draws over whatever moved there. Sized from the UI scale,
the image is shown pixel for pixel, so it is as crisp at scale 2 as at scale 1.
"""

from __future__ import annotations

import datetime as dt

from ..core.values import value

RGBA = tuple[float, float, float, float]

# Tier colours (also the legend's swatches): distinct on Blender's dark and light themes.
TIER_COLOURS: dict[str, RGBA] = {
    "draft": (0.42, 0.68, 0.74, 1.0),
    "standard": (0.33, 0.52, 0.88, 1.0),
    "high": (0.95, 0.62, 0.24, 1.0),
    "4k": (0.72, 0.47, 0.88, 1.0),
}
OTHER_TIER: RGBA = (0.6, 0.6, 0.6, 1.0)
ALLOCATION_COLOUR: RGBA = (0.93, 0.30, 0.30, 1.0)
FORECAST_COLOUR: RGBA = (0.86, 0.86, 0.86, 1.0)
AXIS_COLOUR: RGBA = (0.5, 0.5, 0.5, 1.0)
FUTURE_COLOUR: RGBA = (0.5, 0.5, 0.5, 0.18)  # the days still to come, a faint floor
CLEAR: RGBA = (0.0, 0.0, 0.0, 0.0)

HEADROOM = 8 / 7
ASPECT = 1.0  # height / width: `template_icon` shows a square, so the chart fills it


def tier_colour(tier: str) -> RGBA:
    return TIER_COLOURS.get(tier, OTHER_TIER)


@value
class Series:
    """The numbers the chart draws (plain values, taken from the cached `State.spend`)."""

    start: dt.datetime  # the period, [start, end), UTC
    end: dt.datetime
    tiers: tuple[str, ...]  # stacking order, bottom first
    per_day: tuple[tuple[int, ...], ...]  # per_day[tier][day]: credits charged that day
    now: dt.datetime  # the service's time of the forecast
    allocation: int
    pace: int  # credits a day the runway uses (0: no pace, no forecast line)
    available: int  # what the pace can still spend

    def __init__(
        self,
        start: dt.datetime,
        end: dt.datetime,
        tiers: tuple[str, ...],
        per_day: tuple[tuple[int, ...], ...],
        now: dt.datetime,
        allocation: int,
        pace: int,
        available: int,
    ) -> None:
        self.__dict__.update(
            start=start, end=end, tiers=tiers, per_day=per_day, now=now, allocation=allocation, pace=pace,
            available=available,
        )  # fmt: skip

    @property
    def days(self) -> int:
        return max(1, round((self.end - self.start).total_seconds() / 86_400))

    def spent_by(self, day: int) -> int:
        """Spent from the period's start to the end of day `day` (0-based), all tiers."""
        return sum(sum(t[: day + 1]) for t in self.per_day)

    @property
    def spent(self) -> int:
        return sum(sum(t) for t in self.per_day)

    @property
    def today(self) -> int:
        """The index of `now`'s day in the period (clamped to it)."""
        return min(self.days - 1, max(0, int((self.now - self.start).total_seconds() // 86_400)))

    def projected(self) -> list[tuple[dt.datetime, int]]:
        """The forecast's corners: from now (spent so far) to the period's end at `pace`, flat once
        `available` is spent. Empty without a pace or when the period is over."""
        if self.pace <= 0 or self.now >= self.end:
            return []
        spent = self.spent
        points = [(self.now, spent)]
        days_left = (self.end - self.now).total_seconds() / 86_400
        if self.pace * days_left > self.available:
            out = self.now + dt.timedelta(days=self.available / self.pace)
            points.append((out, spent + self.available))
            points.append((self.end, spent + self.available))
        else:
            points.append((self.end, spent + round(self.pace * days_left)))
        return points

    @property
    def top(self) -> float:
        """The value at the chart's top edge."""
        highest = max([self.allocation, self.spent, *(v for _t, v in self.projected())])
        return max(1.0, highest * HEADROOM)


PREVIEW_PAD = 4  # Blender draws a preview inside its button less 4 px on every side (any UI scale)


def widget_unit(ui_scale: float, pixel_size: int = 1) -> int:
    """Blender's UI unit in pixels (`U.widget_unit`): 20 at UI scale 1, 25 at 1.25, 40 at 2 (where
    its pixel size, `preferences.system.pixel_size`, is 2)."""
    return int(18 * ui_scale + 0.5) + 2 * max(1, pixel_size)  # C roundf: halves up


def size_for(width: float, ui_scale: float, pixel_size: int = 1) -> tuple[float, int, int]:
    """(template_icon scale, image width, image height) for a chart about `width` px wide at UI scale 1.

    `layout.template_icon(scale=s)` makes a square button of s UI units and draws the preview inside
    it, less PREVIEW_PAD a side, at the image's own pixels when the image's long side is exactly
    that: so the image is sized from the scale's real pixels and looks the same, crisp, at 1 and 2.
    """
    scale = max(2.0, int(width / 20 * 4) / 4)  # in quarter units
    side = int(widget_unit(ui_scale, pixel_size) * scale) - 2 * PREVIEW_PAD
    return scale, side, max(8, round(side * ASPECT))


class Canvas:
    """RGBA floats, rows from the top; rectangles only (every line here is made of them).

    Colours are stored premultiplied by their alpha, as Blender composites a preview's pixels: a
    straight (0.5, 0.5, 0.5, 0.18) would show as a bright grey block, not a faint floor."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = [0.0] * (width * height * 4)

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: RGBA) -> None:
        """Fill [x0, x1) × [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        r, g, b, a = colour
        run = [r * a, g * a, b * a, a] * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.width + x0) * 4
            self.pixels[i : i + len(run)] = run

    def pixel(self, x: int, y: int) -> RGBA:
        i = (y * self.width + x) * 4
        r, g, b, a = self.pixels[i : i + 4]
        return (r, g, b, a)

    def bottom_up(self) -> list[float]:
        """Rows from the bottom, as Blender's images and previews store them."""
        row = self.width * 4
        out: list[float] = []
        for y in range(self.height - 1, -1, -1):
            out.extend(self.pixels[y * row : (y + 1) * row])
        return out


@value
class Geometry:
    """Where values and moments land on a canvas of `width` × `height` at `scale`: the period so far
    (cumulative) in the top 3/5, the spend of each day on its own scale below."""

    series: Series
    width: int
    height: int
    scale: float

    def __init__(self, series: Series, width: int, height: int, scale: float) -> None:
        self.__dict__.update(series=series, width=width, height=height, scale=scale)

    @property
    def pad(self) -> int:
        return max(1, round(2 * self.scale))

    @property
    def line(self) -> int:
        """Thickness of the lines: one pixel at scale 1, two at scale 2."""
        return max(1, round(self.scale))

    @property
    def baseline(self) -> int:
        """The row of the value 0 of the cumulative part (its axis is drawn from here down)."""
        return self.pad + round(0.6 * (self.height - 2 * self.pad))

    @property
    def daily_top(self) -> int:
        return self.baseline + self.line + max(2, round(4 * self.scale))

    @property
    def daily_baseline(self) -> int:
        return self.height - self.pad - self.line

    def y(self, value: float) -> int:
        """The row whose top edge is `value` in the cumulative part (rows count from the top)."""
        return self.baseline - round(value / self.series.top * (self.baseline - self.pad))

    def daily_y(self, value: float) -> int:
        """The same for one day's spend, in the lower part (its top is 8/7 of the busiest day)."""
        busiest = max([sum(day) for day in zip(*self.series.per_day, strict=True)] or [0])
        top = max(1.0, busiest * HEADROOM)
        return self.daily_baseline - round(value / top * (self.daily_baseline - self.daily_top))

    def x(self, when: dt.datetime) -> int:
        s = self.series
        share = (when - s.start).total_seconds() / max(1.0, (s.end - s.start).total_seconds())
        return self.pad + round(share * (self.width - 2 * self.pad))

    def day_x(self, day: int) -> int:
        return self.x(self.series.start + dt.timedelta(days=day))


def render(series: Series, width: int, height: int, scale: float) -> tuple[Canvas, Geometry]:
    """Draw the chart on a transparent canvas of `width` × `height` pixels (`scale`: the UI scale)."""
    g = Geometry(series, width, height, scale)
    c = Canvas(width, height)
    gap = 1 if series.days < 40 and width / series.days >= 4 else 0
    for day in range(series.days):
        x0, x1 = g.day_x(day), g.day_x(day + 1) - gap
        if day > series.today:
            c.rect(x0, g.pad, x1, g.baseline, FUTURE_COLOUR)
            c.rect(x0, g.daily_top, x1, g.daily_baseline, FUTURE_COLOUR)
            continue
        below = 0
        for tier, values in zip(series.tiers, series.per_day, strict=True):
            upto = below + sum(values[: day + 1])
            if upto > below:
                c.rect(x0, g.y(upto), x1, g.y(below), tier_colour(tier))
            below = upto
        below = 0
        for tier, values in zip(series.tiers, series.per_day, strict=True):
            upto = below + values[day]
            if upto > below:
                c.rect(x0, g.daily_y(upto), x1, g.daily_y(below), tier_colour(tier))
            below = upto
    c.rect(g.pad, g.baseline, width - g.pad, g.baseline + g.line, AXIS_COLOUR)
    c.rect(g.pad, g.daily_baseline, width - g.pad, g.daily_baseline + g.line, AXIS_COLOUR)
    _forecast(c, g)
    top = g.y(series.allocation)
    c.rect(g.pad, top, width - g.pad, top + g.line, ALLOCATION_COLOUR)
    return c, g


def _forecast(c: Canvas, g: Geometry) -> None:
    """The dashed forecast: a column at a time, each joined to the one before so steep parts stay whole."""
    points = g.series.projected()
    dash = max(2, round(4 * g.scale))
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        x0, x1 = g.x(t0), g.x(t1)
        prev = g.y(v0)
        for x in range(x0, max(x0 + 1, x1)):
            share = (x - x0) / max(1, x1 - x0)
            y = g.y(v0 + (v1 - v0) * share)
            if ((x - x0) // dash) % 2 == 0:
                c.rect(x, min(prev, y), x + g.line, max(prev, y) + g.line, FORECAST_COLOUR)
            prev = y
