// A cron expression in words ("at 02:00 every day, Europe/Berlin"). Pure, no DOM: the
// common forms are put in words, anything else is shown as the raw expression.
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];

const pad = (n) => String(n).padStart(2, "0");
const isNum = (s) => /^\d+$/.test(s);
const step = (s) => (/^\*\/(\d+)$/.exec(s) || [])[1];

function ordinal(n) {
  const v = n % 100;
  if (v >= 11 && v <= 13) return `${n}th`;
  return `${n}${{ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th"}`;
}

function listWords(words) {
  return words.length <= 1 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;
}

/** "1-5" → "Monday to Friday", "0,6" → "Saturday and Sunday"; null if not a weekday field. */
function weekdays(field) {
  if (field === "1-5") return "weekdays (Monday to Friday)";
  if (field === "0,6" || field === "6,0" || field === "6,7") return "weekends";
  const range = /^([0-7])-([0-7])$/.exec(field);
  if (range) return `${DAYS[range[1] % 7]} to ${DAYS[range[2] % 7]}`;
  if (/^[0-7](,[0-7])*$/.test(field)) return listWords(field.split(",").map((d) => DAYS[d % 7]));
  return null;
}

function times(minute, hour) {
  if (isNum(minute) && isNum(hour)) return `at ${pad(hour)}:${pad(minute)}`;
  if (isNum(minute) && /^\d+(,\d+)+$/.test(hour)) {
    return `at ${listWords(hour.split(",").map((h) => `${pad(h)}:${pad(minute)}`))}`;
  }
  return null;
}

/** The expression in words, without the zone; null when it is not a common form. */
export function cronPhrase(expr) {
  const f = String(expr || "").trim().split(/\s+/);
  if (f.length !== 5) return null;
  const [minute, hour, dom, month, dow] = f;
  const everyDay = dom === "*" && month === "*";
  if (f.every((x) => x === "*")) return "every minute";
  if (everyDay && dow === "*" && hour === "*") {
    const n = step(minute);
    if (n) return n === "1" ? "every minute" : `every ${n} minutes`;
    if (isNum(minute)) return minute === "0" ? "every hour, on the hour" : `every hour at minute ${Number(minute)}`;
  }
  if (everyDay && dow === "*" && isNum(minute) && step(hour)) {
    const n = step(hour);
    return `every ${n === "1" ? "" : `${n} `}hour${n === "1" ? "" : "s"} at minute ${Number(minute)}`;
  }
  const at = times(minute, hour);
  if (!at) return null;
  if (everyDay && dow === "*") return `${at} every day`;
  if (everyDay) {
    const days = weekdays(dow);
    return days ? `${at} on ${days}` : null;
  }
  if (month === "*" && dow === "*" && isNum(dom)) return `${at} on the ${ordinal(Number(dom))} of every month`;
  if (isNum(month) && dow === "*" && isNum(dom) && month >= 1 && month <= 12) {
    return `${at} on ${MONTHS[month - 1]} ${Number(dom)} every year`;
  }
  return null;
}

/** "at 02:00 every day, Europe/Berlin"; the raw expression (with its zone) when uncommon. */
export function cronWords(expr, timezone) {
  if (!expr) return "manual only";
  const zone = timezone || "UTC";
  const phrase = cronPhrase(expr);
  return phrase ? `${phrase}, ${zone}` : `${expr} (${zone})`;
}
