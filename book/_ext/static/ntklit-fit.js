// ntklit: equations wider than their column are scaled down to fit (MathJax 3 has no line
// breaking). The book's equations are split so that none needs this at 1400 px; on a phone
// an equation may shrink, never below MIN_SCALE of its size. When done, the page's <html>
// element gets data-ntklit-math-fit="done" (the browser tests wait for it).
(function () {
  "use strict";
  const MIN_SCALE = 0.5;

  function fit() {
    for (const el of document.querySelectorAll('mjx-container[display="true"]')) {
      el.style.fontSize = "";
      el.removeAttribute("data-ntklit-scale");
      const math = el.querySelector("mjx-math");
      if (!math) continue;
      const need = math.getBoundingClientRect().width;
      const have = el.clientWidth;
      if (need > have + 0.5 && need > 0) {
        const scale = Math.max(MIN_SCALE, (have - 1) / need);
        el.style.fontSize = (100 * scale).toFixed(1) + "%";
        el.setAttribute("data-ntklit-scale", scale.toFixed(3));
      }
    }
    // Inline formulas cannot break either: one wider than its line box is scaled the same way.
    for (const el of document.querySelectorAll('mjx-container:not([display="true"])')) {
      el.style.fontSize = "";
      el.removeAttribute("data-ntklit-scale");
      const box = el.parentElement && el.parentElement.closest("p, li, dd, dt, td, th, div");
      if (!box) continue;
      const need = el.getBoundingClientRect().width;
      const have = box.clientWidth;
      if (need > have + 0.5 && need > 0) {
        const scale = Math.max(MIN_SCALE, (have - 1) / need);
        el.style.fontSize = (100 * scale).toFixed(1) + "%";
        el.setAttribute("data-ntklit-scale", scale.toFixed(3));
      }
    }
    document.documentElement.setAttribute("data-ntklit-math-fit", "done");
  }

  function whenTypeset(tries) {
    const mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(fit);
    } else if (tries > 0) {
      setTimeout(() => whenTypeset(tries - 1), 50);
    } else {
      document.documentElement.setAttribute("data-ntklit-math-fit", "done");
    }
  }

  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(fit, 100);
  });
  if (document.querySelector(".math")) {
    whenTypeset(400);
  } else {
    document.documentElement.setAttribute("data-ntklit-math-fit", "done");
  }
})();
