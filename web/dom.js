// What both pages (the volunteer page and the dashboard) use to reach their
// elements and to speak through their live regions.

export const $ = (id) => document.getElementById(id);

/**
 * Sets an element's text only when it changes: the same text written again
 * still replaces the element's text node (garbage for the collector, and
 * layout work), and the volunteer page redraws its figures often.
 */
export const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

/**
 * Sets a live region's text only when it changes: a screen reader may read
 * the same words out again when they are written again.
 */
export const say = (id, text) => setText($(id), text);
