// Settings live in views/settings/ (one module per tab); this keeps the route's import.
export { SettingsView } from "./settings/index.js";
