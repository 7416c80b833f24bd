// Read .ics texts with Mozilla ical.js and print, as JSON, the instants ical.js sees in them.
//
// stdin:  {"calendars": [ics, ...], "probes": ["2027-03-28T01:30:00Z", ...]}
//         (a calendar may also be {"ics": ics, "probes": [...]}, overriding the shared probes)
// stdout: [{"events": [{"uid", "start", "end", "start_tzid", "end_tzid"}, ...],
//           "zones": {TZID: {"locals": [...], "converted": [...]}}}, ...]   (one per calendar)
//
// Every VTIMEZONE of a calendar is registered with ICAL.TimezoneService (after a reset, so only
// UTC is built in) before its VEVENTs are read. ical.js 2 resolves a TZID from the calendar's own
// VTIMEZONE first (Component.getTimeZoneByID) and the service second; either way each DTSTART and
// DTEND with a TZID must end up in an ICAL.Timezone made from this calendar's VTIMEZONE component,
// and the probes use that same zone: anything else (floating time, another zone) fails loudly.
//
// "start"/"end": the event's UTC instants (ICAL.Time#toUnixTime, i.e. ical.js's local-to-UTC).
// For each probe UTC instant, the local wall-clock time ("YYYY-MM-DDTHH:MM:SS") in each zone:
//   "locals":    from ical.js's own expansion of the VTIMEZONE (ICAL.Timezone#changes: each onset
//                from DTSTART, RRULE and TZOFFSETFROM, as UTC): the TZOFFSETTO of the latest onset
//                at or before the probe; null before the first onset (not covered).
//   "converted": from ICAL.Time#convertToZone, ical.js's UTC-to-zone conversion. It looks the
//                offset up with the UTC wall-clock time as if it were local time, so it can be off
//                by the DST amount for as many hours as the UTC offset before or after a change
//                (ical.js issue #847, open), however correct the VTIMEZONE is.
import ICAL from "ical.js";

const input = JSON.parse(await readStdin());
const shared = input.probes ?? [];
const output = (Array.isArray(input) ? input : input.calendars).map((item) =>
  typeof item === "string" ? read(item, shared) : read(item.ics, item.probes ?? shared)
);
process.stdout.write(JSON.stringify(output));

function read(ics, probes) {
  const calendar = new ICAL.Component(ICAL.parse(ics));
  ICAL.TimezoneService.reset();
  const zones = new Map();
  for (const vtimezone of calendar.getAllSubcomponents("vtimezone")) {
    ICAL.TimezoneService.register(vtimezone);
    const tzid = vtimezone.getFirstPropertyValue("tzid");
    const zone = calendar.getTimeZoneByID(tzid);
    if (zone?.component !== vtimezone || ICAL.TimezoneService.get(tzid).component !== vtimezone) {
      throw new Error(`TZID ${tzid} is not read from the calendar's VTIMEZONE`);
    }
    zones.set(tzid, zone);
  }
  const events = calendar.getAllSubcomponents("vevent").map((vevent) => {
    const event = new ICAL.Event(vevent);
    return {
      uid: event.uid,
      start: instant(vevent, "dtstart", event.startDate, zones),
      end: instant(vevent, "dtend", event.endDate, zones),
      start_tzid: event.startDate.zone.tzid,
      end_tzid: event.endDate.zone.tzid,
    };
  });
  const times = probes.map(utcTime);
  const probed = {};
  for (const [tzid, zone] of zones) {
    const onsets = expanded(zone, times);
    probed[tzid] = {
      locals: times.map((time) => local(onsets, time)),
      converted: times.map((time) => time.convertToZone(zone).toString()),
    };
  }
  return { events, zones: probed };
}

function instant(vevent, name, time, zones) {
  const tzid = vevent.getFirstProperty(name)?.getParameter("tzid");
  if (tzid !== undefined && time.zone.component !== zones.get(tzid)?.component) {
    throw new Error(`${name} TZID=${tzid} did not resolve to the calendar's own VTIMEZONE`);
  }
  if (tzid === undefined && time.zone !== ICAL.Timezone.utcTimezone) {
    throw new Error(`${name} is neither UTC nor in a VTIMEZONE (floating time?)`);
  }
  return isoUtc(time.toUnixTime());
}

// ical.js's onsets of a zone, as [UTC epoch seconds, offset seconds], sorted; asking for an offset
// in the last probe's year makes ical.js expand its RRULEs at least that far.
function expanded(zone, times) {
  if (times.length > 0) {
    const year = Math.max(...times.map((time) => time.year));
    zone.utcOffset(new ICAL.Time({ year, month: 12, day: 31, hour: 23 }, zone));
  }
  return zone.changes
    .map((change) => [
      Date.UTC(change.year, change.month - 1, change.day, change.hour, change.minute, change.second) / 1000,
      change.utcOffset,
    ])
    .sort((a, b) => a[0] - b[0]);
}

function local(onsets, time) {
  const at = time.toUnixTime();
  let offset = null;
  for (const [onset, utcOffset] of onsets) {
    if (onset > at) {
      break;
    }
    offset = utcOffset;
  }
  return offset === null ? null : isoUtc(at + offset).slice(0, -1);
}

function utcTime(iso) {
  const match = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/.exec(iso);
  if (!match) {
    throw new Error(`probe ${iso} is not YYYY-MM-DDTHH:MM:SSZ`);
  }
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
  return new ICAL.Time({ year, month, day, hour, minute, second }, ICAL.Timezone.utcTimezone);
}

function isoUtc(seconds) {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
