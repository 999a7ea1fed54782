// Each original / protected pair of the evaluation report: hovering shows the original
// (the style sheet); a click pins the original, each further click switches between the
// two (Enter and Space too). Inlined into the page when it shows frames.
document.querySelectorAll(".ab").forEach(function (pair) {
  function flip() {
    var original = pair.classList.contains("pinned") ?
      !pair.classList.contains("show-original") : true;
    pair.classList.add("pinned");
    pair.classList.toggle("show-original", original);
    pair.setAttribute("aria-pressed", original ? "true" : "false");
  }
  pair.addEventListener("click", flip);
  pair.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); flip(); }
  });
});
