// What both pages (the volunteer page and the dashboard) use to reach their
// elements and to speak through their live regions.

export const $ = (id) => document.getElementById(id);

/**
 * Sets a live region's text only when it changes: a screen reader may read
 * the same words out again when they are written again.
 */
export const say = (id, text) => { if ($(id).textContent !== text) $(id).textContent = text; };
