export function App() {
  return (
    <main>
      <h1>strangler</h1>
    </main>
  );
}
